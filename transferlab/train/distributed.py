"""Several processes, one model: the Trainer under ``torchrun``, on ``torch.distributed``.

``torchrun --nproc_per_node N script.py`` starts N copies of a script and sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`setup` then joins the process group (NCCL on CUDA,
gloo on the CPU), and the Trainer wraps the model in ``DistributedDataParallel``, gives each
rank its slice of every global batch, all-reduces the training metrics, and lets rank 0 alone
write checkpoints, caches and progress bars.  Nothing here communicates by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """``True`` when ``torchrun`` (or any launcher setting ``WORLD_SIZE`` > 1) started this
    process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(backend: str | None = None) -> Ranks:
    """Join the process group that ``torchrun`` describes (once), and return this process's ranks;
    ``Ranks()`` in a single process.

    Args:
        backend: ``"nccl"`` (CUDA) or ``"gloo"`` (CPU); default: NCCL when CUDA is available.

    Raises:
        ValueError: NCCL asked for on a machine without CUDA, or an unknown backend.
    """
    if not launched_by_torchrun():
        return Ranks()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"unknown backend {backend!r}: use 'nccl' (CUDA GPUs) or 'gloo' (CPU)")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError(
            "the NCCL backend needs CUDA GPUs, and this machine has none: use backend='gloo' "
            "(or leave it out) to train on the CPU"
        )
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return current()


def current() -> Ranks:
    """This process's ranks (``Ranks()`` when no process group is running)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if current().world > 1:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks (``t`` itself in a single process)."""
    if current().world > 1:
        t = t.clone()
        dist.all_reduce(t)
    return t


def shutdown() -> None:
    """Leave the process group (a no-op in a single process): call it at the end of a script."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
