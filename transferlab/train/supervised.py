"""The supervised loss the Trainer adds at every step, as an object with its rules in one place.

For a model with one head: the cross-entropy of the batch's labels.  For a multi-head model
(the page ``book/multitask.md``, :mod:`transferlab.multitask`) one loss per head, on the group label
of its name (``"y"``: the main labels):

- a label equal to ``MISSING`` (-1, :mod:`transferlab.train.batch`) is left out of its task's
  loss and accuracy: ``ce_t = Σ_{i: y_it ≠ -1} CE_i / #{i: y_it ≠ -1}`` (0 for a batch without a
  label of task t);
- a group label of floating point is a regression target for a head with one output, trained
  by the masked mean squared error (``mse_t``, NaN being missing).

The per-task losses reach the loss terms as ``step.task_losses``
(:class:`~transferlab.train.terms.Step`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from transferlab.models.protocol import Logits
from transferlab.train.batch import MISSING, Batch, known_labels


def masked_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy over the samples whose label is not ``MISSING``; 0 (keeping the graph)
    when none has one.  ``logits``: ``(B, C)``; ``y``: ``(B,)`` in ``[0, C) ∪ {MISSING}``."""
    total = F.cross_entropy(logits.float(), y, ignore_index=MISSING, reduction="sum")
    return total / (y != MISSING).sum().clamp(min=1)


def masked_mse(out: Tensor, y: Tensor) -> Tensor:
    """Mean squared error of a regression head over the samples whose target is not NaN; 0
    (keeping the graph) when none has one.  ``out``: ``(B, 1)``; ``y``: ``(B,)`` floating
    point."""
    known = known_labels(y)
    err = (out[:, 0].float() - torch.where(known, y, torch.zeros_like(y)).float()) ** 2
    return torch.where(known, err, torch.zeros_like(err)).sum() / known.sum().clamp(min=1)


def task_labels(batch: Batch, task: str) -> Tensor:
    """The labels of head ``task``: ``batch.y`` for ``"y"``, else the group label of that name."""
    return batch.y if task == "y" else batch.groups[task]


class SupervisedLoss:
    """The supervised part of the objective, per task.

    ``loss(logits, batch) -> {task: scalar}``: ``{"y": masked CE}`` for one head; for a dict of
    heads, the masked cross-entropy of each (the masked squared error for a float target).
    """

    def __call__(self, logits: Logits, batch: Batch) -> dict[str, Tensor]:
        if isinstance(logits, dict):
            return {t: self.task_loss(v, task_labels(batch, t)) for t, v in logits.items()}
        return {"y": masked_cross_entropy(logits, batch.y)}

    @staticmethod
    def task_loss(out: Tensor, y: Tensor) -> Tensor:
        """The masked loss of one head: cross-entropy for class labels, squared error for float
        targets."""
        return masked_mse(out, y) if y.is_floating_point() else masked_cross_entropy(out, y)

    @staticmethod
    def parts(task_losses: dict[str, Tensor], logits: Logits, batch: Batch) -> dict[str, Tensor]:
        """The detached losses as the history names them: ``ce`` for one head, ``ce_<task>`` or
        ``mse_<task>`` per head."""
        if not isinstance(logits, dict):
            return {"ce": task_losses["y"].detach()}
        return {
            f"{'mse' if task_labels(batch, t).is_floating_point() else 'ce'}_{t}": v.detach()
            for t, v in task_losses.items()
        }

    @staticmethod
    def correct(logits: Logits, batch: Batch) -> tuple[Tensor, Tensor]:
        """Correct predictions and labelled samples in the batch, of head ``"y"`` (or the first
        head) of a multi-head model; samples whose label is ``MISSING`` count in neither."""
        if isinstance(logits, dict):
            task = "y" if "y" in logits else next(iter(logits))
            logits, y = logits[task], task_labels(batch, task)
        else:
            y = batch.y
        known = y != MISSING
        return ((logits.detach().argmax(1) == y) & known).sum(), known.sum()

    @staticmethod
    def scores(logits: Logits, labels: dict[str, Tensor]) -> dict[str, float]:
        """Evaluation scores of every sample's logits against ``labels`` (``{"y": ..., **groups}``).

        ``{"loss": mean cross-entropy, "acc": accuracy}`` for one head; for a multi-head model
        also ``{task}_loss`` and ``{task}_acc`` per head that ``labels`` holds (``loss`` is their
        sum, ``acc`` that of head ``"y"``, else of the first scored head).  ``MISSING`` labels
        are left out; a task without any label is not scored; a regression head (float targets)
        gets ``{task}_loss``, its mean squared error, and no accuracy.

        Raises:
            ValueError: no task of the model has a label.
        """
        heads = logits if isinstance(logits, dict) else {"y": logits}
        out = {}
        for task, v in heads.items():
            y = labels.get(task)
            if y is None or not bool(known_labels(y).any()):
                continue
            known = known_labels(y)
            if y.is_floating_point():  # a regression target: its loss only
                out[f"{task}_loss"] = F.mse_loss(v[known][:, 0].float(), y[known].float()).item()
                continue
            out[f"{task}_loss"] = F.cross_entropy(v[known], y[known]).item()
            out[f"{task}_acc"] = (v[known].argmax(1) == y[known]).float().mean().item()
        scored = [t for t in heads if f"{t}_loss" in out]
        if not scored:
            raise ValueError(f"evaluation data: no label for any task of the model ({list(heads)})")
        if not isinstance(logits, dict):
            return {"loss": out["y_loss"], "acc": out["y_acc"]}
        classified = [t for t in scored if f"{t}_acc" in out]
        first = "y" if "y" in classified else classified[0] if classified else None
        acc = {"acc": out[f"{first}_acc"]} if first else {}
        return {"loss": sum(out[f"{t}_loss"] for t in scored), **acc, **out}
