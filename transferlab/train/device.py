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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (x86's ``avx512_bf16`` or ``amx_bf16``
    instructions, read from ``/proc/cpuinfo``; ``False`` where that file does not exist).  On such
    a CPU ``torch.autocast("cpu", dtype=torch.bfloat16)`` runs a transformer 1.6–1.8× faster than
    float32; elsewhere it emulates bf16 and is often slower."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def amp_dtype(device: torch.device, cpu: bool = False) -> torch.dtype | None:
    """The autocast dtype for mixed precision: bf16 (or fp16) on CUDA; on the CPU, bf16 when
    ``cpu`` is set and the CPU has native bf16 (:func:`cpu_has_native_bf16`); else ``None`` (off:
    float32)."""
    if device.type == "cpu":
        return torch.bfloat16 if cpu and cpu_has_native_bf16() else None
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
