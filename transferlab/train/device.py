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


#: set to 1 to compute in float32 everywhere (no autocast on the CPU or on CUDA), e.g. to check
#: that a result does not depend on bf16 rounding (``transferlab bench ... --fp32`` sets it)
FP32_ENV = "TRANSFERLAB_FP32"


def force_fp32() -> bool:
    """Whether ``$TRANSFERLAB_FP32`` asks for float32 everywhere."""
    return os.environ.get(FP32_ENV, "").strip() not in ("", "0")


def amp_dtype(device: torch.device, cpu: bool = False) -> torch.dtype | None:
    """The autocast dtype for mixed precision: bf16 (or fp16) on CUDA; on the CPU, bf16 when
    ``cpu`` is set and the CPU has native bf16 (:func:`cpu_has_native_bf16`); else ``None`` (off:
    float32).  ``None`` everywhere when ``$TRANSFERLAB_FP32`` is set (:func:`force_fp32`)."""
    if force_fp32():
        return None
    if device.type == "cpu":
        return torch.bfloat16 if cpu and cpu_has_native_bf16() else None
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def arithmetic(amp: bool = True, device: str | torch.device = "auto") -> str:
    """What a run with ``Trainer(amp=amp, cpu_amp=amp)`` computes in on ``device``:
    ``"cpu-bf16"`` or ``"cpu-fp32"``, ``"cuda-bf16"``, ``"cuda-fp16"`` or ``"cuda-fp32"`` (part of
    every cached benchmark's key: the two kinds of CPU give different numbers)."""
    dev = select_device(device)
    dtype = amp_dtype(dev, cpu=True) if amp else None
    return f"{dev.type}-" + {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
