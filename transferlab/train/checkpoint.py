"""Checkpoints: writing and restoring a Trainer's whole state (so that a resumed ``fit``
continues the same run), reading checkpoints safely (``weights_only=True``) with errors that
say what to do, and building a target model from a source checkpoint."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from transferlab.models.cnn import SmallCNN, new_head
from transferlab.train import distributed
from transferlab.train.history import History

if TYPE_CHECKING:
    from transferlab.train.trainer import Trainer


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, or does not fit the model."""


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by :meth:`~transferlab.train.trainer.Trainer.save`.

    Raises:
        CheckpointError: the file is missing, unreadable (corrupt or truncated) or not a
            transferlab checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path, or train first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a PyTorch checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); delete it and train again"
        ) from exc
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a transferlab checkpoint (it has no 'model' entry)")
    return state


def from_source(checkpoint: str | Path | dict, num_classes: int) -> SmallCNN:
    """Build a target model from a source checkpoint (a path written by
    :meth:`~transferlab.train.trainer.Trainer.save` or a state dict) with a new head for
    ``num_classes``.

    Raises:
        CheckpointError: see :func:`read_checkpoint`.
        ValueError: the checkpoint was not written for a :class:`~transferlab.models.cnn.SmallCNN`.
    """
    state = read_checkpoint(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    config = state.get("model_config") or {}
    weights = state.get("model", state)
    if not config:
        raise ValueError("the checkpoint has no 'model_config': it was not written for a SmallCNN")
    source = SmallCNN(**config)
    source.load_state_dict(weights)
    return new_head(source, num_classes)


def term_keys(terms: Sequence[nn.Module]) -> list[str]:
    """The names the loss terms' states are saved under: each term's ``name``, with ``#2``,
    ``#3``... for a second and third term of the same name."""
    keys, seen = [], {}
    for t in terms:
        name = str(t.name)
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys


def save_trainer(trainer: Trainer, path: str | Path) -> None:
    """Write the model, optimiser, loss terms (by name), scheduler, gradient scaler, RNG
    states, unlabelled stream, epoch, step and history of ``trainer`` to ``path``, atomically
    (under ``torchrun``: rank 0 writes, the others wait for it)."""
    if not trainer.ranks.is_main:
        distributed.barrier()
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    terms = trainer.loss_terms
    state = {
        "model": trainer.model.state_dict(),
        "model_config": getattr(trainer.model, "config", None) or {},
        "optimizer": trainer.optimizer.state_dict(),
        "terms": {k: t.state_dict() for k, t in zip(term_keys(terms), terms)},
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else {},
        "scaler": trainer.scaler.state_dict(),
        "rng": {"batches": trainer.generator.get_state(), "torch": torch.get_rng_state()},
        "unlabelled": trainer.unlabelled.state_dict() if trainer.unlabelled is not None else {},
        "epoch": trainer.epoch,
        "step": trainer.step,
        "history": trainer.history.records,
    }
    if torch.cuda.is_available():
        state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # never leave a half-written checkpoint behind
    distributed.barrier()


def load_trainer(trainer: Trainer, path: str | Path) -> None:
    """Restore into ``trainer`` everything :func:`save_trainer` wrote.

    Raises:
        CheckpointError: missing, corrupt, or written for another model, optimiser or set of
            loss terms.
    """
    state = read_checkpoint(path)
    try:
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        saved = state.get("terms", {})
        if not isinstance(saved, dict):
            raise KeyError(
                "its loss-term states are saved by position, as transferlab did before it saved "
                "them by name: train again"
            )
        terms = trainer.loss_terms
        for key, term in zip(term_keys(terms), terms):
            if key in saved:
                term.load_state_dict(saved[key])
            elif any(True for _ in term.state_dict()):
                raise KeyError(
                    f"no state for loss term {key!r} (the checkpoint has {sorted(saved)})"
                )
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model/optimiser: {str(exc).splitlines()[0]}"
        ) from exc
    if trainer.scheduler is not None and state.get("scheduler"):
        trainer.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    rng = state.get("rng", {})
    if "batches" in rng:
        trainer.generator.set_state(rng["batches"])
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    if trainer.unlabelled is not None and state.get("unlabelled"):
        trainer.unlabelled.load_state_dict(state["unlabelled"])
    trainer.epoch, trainer.step = int(state.get("epoch", 0)), int(state.get("step", 0))
    trainer.history = History(list(state.get("history", [])))
