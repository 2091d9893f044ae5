"""Device choice and seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def select_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA if available, then Apple MPS, then CPU; anything else is passed to
    ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so that a run can be repeated."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for mixed precision: bf16 (or fp16) on CUDA, ``None`` (off) elsewhere."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
