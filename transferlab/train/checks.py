"""The checks the Trainer makes before it trains or evaluates: data the model cannot take, and
settings of ``fit`` that cannot work, fail early with a message that says how to fix them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn

from transferlab.data.splits import TensorSplit
from transferlab.models.protocol import FeaturesAndLogits, head_names
from transferlab.train.batch import MISSING, Data, as_split, batches, known_labels, sample_shape
from transferlab.train.terms import LossTerm


def check_data(
    model: nn.Module,
    data: Data,
    what: str = "training data",
    *,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> None:
    """Fail early, with a clear message, on data the model cannot train on.

    For a multi-head model, labels equal to ``MISSING`` (-1) are allowed (that task is
    unlabelled for that sample), and a head with one output may take floating-point group
    labels: a regression target, NaN where missing.
    Evaluation data may lack a head's group label (that task is then not scored); training
    data must hold one, with at least one label.

    Raises:
        ValueError: empty data, non-integer labels (other than a regression target of a
            one-output head), labels outside ``[0, num_classes)``,
            an input shape the model cannot take, a head without its group label, or (in
            training data) a head whose task has no label anywhere.
    """
    x, labels, in_memory = _inputs_and_labels(data, what)
    tasks = head_names(model)
    _check_labels(labels, tasks, what, whole=in_memory)
    out = _outputs_of_two(model, x, what, device, autocast)
    _check_outputs(out, labels, tasks, what)


def _inputs_and_labels(data: Data, what: str) -> tuple[Tensor, dict[str, Tensor], bool]:
    """The inputs and ``{"y": labels, **groups}`` of in-memory data (``True``), or of the first
    sample of a ``Dataset`` (``False``).

    Raises:
        ValueError: empty data.
    """
    split = as_split(data)
    if split is None:
        if len(data) == 0:
            raise ValueError(f"{what} is empty (0 samples): check the split or the k of few_shot()")
        first = next(batches(torch.utils.data.Subset(data, [0]), 1, shuffle=False))
        x, labels = first.x, {"y": first.y, **first.groups}
    else:
        x, labels = split.x, {"y": split.y, **split.groups}
    if len(x) == 0:
        raise ValueError(f"{what} is empty (0 samples): check the split or the k of few_shot()")
    return x, labels, split is not None


def _check_labels(
    labels: dict[str, Tensor], tasks: list[str] | None, what: str, whole: bool
) -> None:
    """Every head has its labels (in training data), of an integer type unless a one-output
    head regresses them, and (``whole``: all the labels are there) at least one known label."""
    training = what == "training data"
    if training and tasks is not None and (absent := [t for t in tasks if t not in labels]):
        raise ValueError(
            f"{what}: the model has a head for task(s) {absent} "
            "but the data has no such group label "
            f"(it has {sorted(labels)}); add them to TensorSplit.groups, or name the head of the "
            "split's main labels 'y'"
        )
    for name, y in labels.items():
        regression = (
            y.dtype.is_floating_point and tasks is not None and name in tasks and name != "y"
        )
        if (y.dtype.is_floating_point and not regression) or y.dtype == torch.bool:
            which = "labels" if name == "y" else f"group labels {name!r}"
            raise ValueError(
                f"{what}: {which} must be integer class indices (int64), got {y.dtype}"
            )
    if training and whole and tasks is not None:
        unlabelled = [t for t in tasks if not bool(known_labels(labels[t]).any())]
        if unlabelled:
            raise ValueError(
                f"{what}: the head(s) for task(s) {unlabelled} have no label anywhere "
                "in the training data "
                f"(every label is MISSING = {MISSING}): "
                "drop those heads or add labelled samples of those tasks"
            )


def _outputs_of_two(
    model: nn.Module,
    x: Tensor,
    what: str,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager],
):
    """The model's logits on the first two inputs, in eval mode (restored afterwards).

    Raises:
        ValueError: inputs the model cannot take.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast():
            _, out = FeaturesAndLogits(model)(x[:2].to(device))
    except RuntimeError as exc:
        raise ValueError(
            f"{what}: the model cannot take inputs of shape {tuple(x.shape[1:])} "
            f"(one sample, as (C, H, W)): {str(exc).splitlines()[0]}. "
            "Build the model for these images (e.g. SmallCNN(in_channels=...)) or convert the data."
        ) from exc
    finally:
        model.train(was_training)
    return out


def _check_outputs(out, labels: dict[str, Tensor], tasks: list[str] | None, what: str) -> None:
    """Logits of shape ``(N, C)`` and labels in ``[0, C)`` (or ``MISSING`` for one task of
    several); a regression target needs a head with one output."""
    for task, logits in out.items() if isinstance(out, dict) else [("y", out)]:
        if logits.ndim != 2:
            raise ValueError(
                f"the model must return logits of shape (N, num_classes), got {tuple(logits.shape)}"
            )
        if task not in labels:  # evaluation data without this task: not scored
            continue
        y, num_classes = labels[task], logits.shape[1]
        if y.dtype.is_floating_point:  # a regression target (allowed above only for a head)
            if num_classes != 1:
                raise ValueError(
                    f"{what}: group labels {task!r} are floating point, "
                    "a regression target, but its head "
                    f"has {num_classes} outputs: give a regression task a head with one output, or "
                    "class labels as integers (int64)"
                )
            continue
        # MISSING marks an absent label of one task of a multi-head model;
        # a single head has one task
        bad = ((y < 0) & ((y != MISSING) | (tasks is None))) | (y >= num_classes)
        if bad.any():
            pos = torch.nonzero(bad).flatten()
            values = sorted(set(y[pos].tolist()))
            which = "labels" if task == "y" else f"group labels {task!r}"
            raise ValueError(
                f"{what}: {which} must lie in [0, {num_classes}) "
                f"for a head with {num_classes} outputs, "
                f"but {len(pos)} label(s) do not: values {values[:10]} "
                f"at positions {pos[:10].tolist()}. "
                "Fix the labels, or give the model a head with more outputs "
                "(transferlab.models.new_head)."
            )


def check_fit(
    terms: Sequence[LossTerm],
    train: Data,
    unlabelled: Tensor | Data | None,
    epochs: int | None,
    max_steps: int | None,
) -> None:
    """Check the arguments of :meth:`~transferlab.train.trainer.Trainer.fit`.

    Raises:
        ValueError: ``max_steps`` not a positive integer, ``epochs`` negative, a term that
            needs unlabelled data without it, or unlabelled images of another shape.
    """
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps <= 0):
        raise ValueError(
            f"max_steps must be a positive number of optimiser steps, got {max_steps!r}"
        )
    if epochs is not None and (not isinstance(epochs, int) or epochs < 0):
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    needs = [t.name for t in terms if t.needs_unlabelled]
    if needs and unlabelled is None:
        raise ValueError(
            f"the loss term(s) {needs} need unlabelled data: "
            "pass fit(train, unlabelled=target.train)"
        )
    if unlabelled is not None:
        if not isinstance(unlabelled, (Tensor, TensorSplit)):
            raise ValueError(
                "unlabelled must be a tensor of images (M, C, H, W) or a TensorSplit "
                "(its labels are ignored)"
            )
        shape_u, shape_l = sample_shape(unlabelled), sample_shape(train)
        if shape_u != shape_l:
            raise ValueError(
                f"the unlabelled images have shape {shape_u} (C, H, W) but the labelled ones "
                f"{shape_l}: both must be images of the same size and channels "
                "(render or resize them alike)"
            )
