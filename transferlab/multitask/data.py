"""Task data for multi-task learning: several labelled sets in one split, with the labels a
sample lacks marked ``MISSING`` (-1; NaN for a regression target), and coarse tasks derived from
a digit.

The Trainer leaves a ``MISSING`` label out of its task's loss and accuracy
(``transferlab.train.trainer``), so one batch can mix samples of several tasks.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from transferlab.data.splits import TensorSplit
from transferlab.train.batch import MISSING

#: digits drawn with a closed loop (0, 6, 8, 9; an open 4 in most handwriting)
CLOSED_LOOP = (0, 6, 8, 9)


def coarse_tasks(digit: Tensor) -> dict[str, Tensor]:
    """Coarse tasks derived from digit labels ``(N,)`` (``MISSING`` stays ``MISSING``):
    ``parity`` (digit mod 2), ``loop`` (1 for a closed loop: 0, 6, 8, 9), ``small`` (1 for a
    digit < 5); each ``(N,)`` int64 in {0, 1}."""
    known = digit != MISSING
    loop = torch.isin(digit, torch.tensor(CLOSED_LOOP, device=digit.device)).long()
    out = {"parity": digit % 2, "loop": loop, "small": (digit < 5).long()}
    return {k: torch.where(known, v, torch.full_like(v, MISSING)) for k, v in out.items()}


def mix_tasks(
    tasks: Mapping[str, TensorSplit],
    main: str = "y",
    repeat: Mapping[str, int] | None = None,
    extra: Mapping[str, Mapping[str, Tensor]] | None = None,
) -> TensorSplit:
    """One split holding the samples of several tasks; each sample is labelled for its own task
    only, every other task's label being ``MISSING`` (NaN for a task whose labels are floating
    point: a regression target).

    Args:
        tasks: ``{task: split}``: the images and labels (``split.y``) of each task; the task
            named ``main`` becomes the split's ``y``, the others its ``groups``.
        repeat: ``{task: r}`` repeats that task's samples r times (e.g. the 30 scarce labels
            of the main task, so that a batch of a mixed split holds some of them).
        extra: ``{task: {group: labels}}``: more labels of the samples of ``task`` (e.g. the
            coarse tasks of ``coarse_tasks``), ``MISSING`` for the other samples.

    Returns:
        a ``TensorSplit`` with ``x`` ``(Σ_t r_t N_t, C, H, W)``,
        ``y`` the main labels, ``groups[t]`` the other tasks' labels.

    Raises:
        ValueError: no task named ``main``, or ``repeat``/``extra`` naming an unknown task.
    """
    repeat, extra = dict(repeat or {}), dict(extra or {})
    if main not in tasks:
        raise ValueError(f"no task named {main!r} (the main task) among {sorted(tasks)}")
    if unknown := sorted((set(repeat) | set(extra)) - set(tasks)):
        raise ValueError(f"repeat/extra name task(s) {unknown} that are not among {sorted(tasks)}")
    names = list(tasks)
    groups = [g for t in names for g in extra.get(t, {})]
    dtypes = {t: tasks[t].y.dtype for t in names} | {
        g: v.dtype for t in names for g, v in extra.get(t, {}).items()
    }

    def missing(n: int, task: str) -> Tensor:
        if dtypes[task].is_floating_point:
            return torch.full((n,), float("nan"), dtype=dtypes[task])
        return torch.full((n,), MISSING, dtype=torch.long)

    xs, labels = [], {t: [] for t in [*names, *groups]}
    for t in names:
        split, r = tasks[t], repeat.get(t, 1)
        n = len(split) * r
        xs.append(split.x.repeat(r, *([1] * (split.x.dim() - 1))))
        for u in names:
            labels[u].append(split.y.repeat(r) if u == t else missing(n, u))
        for g in groups:
            own = extra.get(t, {}).get(g)
            labels[g].append(own.repeat(r) if own is not None else missing(n, g))
    cat = {t: torch.cat(v) for t, v in labels.items()}
    y = cat.pop(main)
    return TensorSplit(torch.cat(xs), y, cat)
