"""An on-disk cache of tensors (generated data sets, pretrained source models).

Files live in ``$TRANSFERLAB_CACHE`` (default ``~/.cache/transferlab``).  Each entry stores its
parameters, a format version and a checksum; an entry that is unreadable, truncated, written by
another version or built from other parameters is rebuilt, with a warning, instead of being used.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

FORMAT_VERSION = 1


def cache_dir() -> Path:
    """The cache folder (created on demand): ``$TRANSFERLAB_CACHE`` or ``~/.cache/transferlab``."""
    root = os.environ.get("TRANSFERLAB_CACHE") or Path.home() / ".cache" / "transferlab"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _checksum(tensors: dict[str, Tensor]) -> int:
    crc = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)  # a 0-d tensor has no byte view
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"", crc)
    return crc


#: parts of the package that cannot change a computed result (plots, grading, the command line)
NOT_COMPUTING = ("grading", "viz", "cli.py")


def code_version() -> str:
    """A digest of the package's computing code: results cached with it are recomputed whenever
    a module that could change them changes (so a cached benchmark never outlives its code);
    edits to ``NOT_COMPUTING`` do not invalidate them."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] in NOT_COMPUTING:
            continue
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without disturbing the global random state of Python, NumPy and PyTorch (CPU
    and CUDA): whatever the block draws, the caller's next draw is the same as without it."""
    py, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(np_state)


def cache_path(name: str, params: dict) -> Path:
    """Where the entry ``name`` built with ``params`` is stored."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    return cache_dir() / f"{name}-{digest[:16]}.pt"


def cached(
    name: str, params: dict, build: Callable[[], dict[str, Tensor]], version: int = 0
) -> dict[str, Tensor]:
    """Return the tensors built by ``build()``, from the cache when a valid copy is there.

    Args:
        name: a short name for the entry (part of the file name).
        params: everything the result depends on (JSON-serialisable).
        build: computes the tensors when the cache has no valid copy.  It runs under
            :func:`preserved_rng`, so a cold cache leaves the caller's random state exactly as a
            warm one does (a result never depends on whether the cache was warm).
        version: bump it when ``build`` changes meaning; older entries then count as stale.

    Under ``torchrun``, rank 0 builds and writes the entry while the other ranks wait for it,
    then read it (every rank must call this in the same order).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return _cached(name, params, build, version)
    if dist.get_rank() == 0:
        tensors = _cached(name, params, build, version)
        dist.barrier()
        return tensors
    dist.barrier()
    return _cached(name, params, build, version)


def _cached(
    name: str, params: dict, build: Callable[[], dict[str, Tensor]], version: int = 0
) -> dict[str, Tensor]:
    """One process's part of :func:`cached`: read a valid entry, else build and write it."""
    path = cache_path(name, params)
    stamp = {"format": FORMAT_VERSION, "version": version, "params": json.dumps(params, sort_keys=True, default=str)}
    if path.exists():
        problem = None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            meta, tensors = blob["meta"], blob["tensors"]
            if any(meta.get(k) != v for k, v in stamp.items()):
                problem = "stale (built by another version or with other parameters)"
            elif meta.get("checksum") != _checksum(tensors):
                problem = "corrupt (checksum mismatch)"
        except Exception as exc:  # noqa: BLE001 (any unreadable file means: rebuild it)
            problem = f"corrupt ({type(exc).__name__}: {exc})"
        if problem is None:
            return tensors
        warnings.warn(f"cache entry {path} is {problem}; rebuilding it", stacklevel=2)
    with preserved_rng():
        tensors = build()
    meta = dict(stamp, checksum=_checksum(tensors))
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"meta": meta, "tensors": tensors}, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written entry behind
    return tensors
