"""Step-level callbacks: a learning rate annealed over training, and a per-step log.

Both plug into :class:`~transferlab.train.trainer.Trainer` through ``callbacks=[...]``; the
progress ``p = step / trainer.total_steps`` runs from 0 to 1 over the planned optimiser steps of
the current :meth:`~transferlab.train.trainer.Trainer.fit` (``max_steps`` or the epochs).
"""

from __future__ import annotations

import torch

from transferlab.train.callbacks import Callback


class AnnealedLR(Callback):
    r"""The learning-rate schedule of DANN (Ganin et al. 2016), set before every step:

    .. math:: \mu_p = \frac{\mu_0}{(1 + \alpha p)^\beta}

    with :math:`\mu_0` each parameter group's learning rate when training starts and ``p`` the
    fraction of the planned steps done (so ``μ`` falls to about ``μ_0 / 6`` with α = 10,
    β = 0.75).

    Args:
        alpha, beta: the schedule's constants (10 and 0.75 in the paper).
    """

    def __init__(self, alpha: float = 10.0, beta: float = 0.75):
        self.alpha, self.beta = alpha, beta
        self.base: list[float] | None = None

    def factor(self, p: float) -> float:
        """:math:`(1 + \\alpha p)^{-\\beta}` for progress ``p`` in [0, 1]."""
        return (1.0 + self.alpha * p) ** -self.beta

    def on_step_start(self, trainer, step: int) -> None:
        groups = trainer.optimizer.param_groups
        if self.base is None or len(self.base) != len(groups):
            self.base = [g["lr"] for g in groups]
        p = min(step / max(trainer.total_steps, 1), 1.0)
        for g, lr in zip(groups, self.base):
            g["lr"] = lr * self.factor(p)


class StepLog(Callback):
    """Record some of the loss parts at every optimiser step (the Trainer's history keeps one
    mean per epoch), e.g. ``StepLog("dann_disc_acc")`` to plot a discriminator's accuracy over
    training.

    Attributes:
        steps: the global step index of each record.
        values: ``{key: [value per step]}`` (NaN where a step had no such part).
    """

    def __init__(self, *keys: str):
        if not keys:
            raise ValueError(
                "StepLog needs the names of the parts to record, e.g. StepLog('dann_disc_acc')"
            )
        self.keys = keys
        self.steps: list[int] = []
        self.values: dict[str, list[float]] = {k: [] for k in keys}

    def on_step_end(self, trainer, step, parts: dict[str, torch.Tensor]) -> None:
        self.steps.append(step.step)
        for k in self.keys:
            self.values[k].append(float(parts[k]) if k in parts else float("nan"))
