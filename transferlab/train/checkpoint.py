"""Reading checkpoints safely (``weights_only=True``) with errors that say what to do, and
building a target model from a source checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from transferlab.models.cnn import SmallCNN, new_head


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
    :meth:`~transferlab.train.trainer.Trainer.save` or a state dict) with a new head for ``num_classes``.

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
