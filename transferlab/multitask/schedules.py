"""Alternating multi-task training: one task per optimiser step, chosen by a schedule.

A schedule is a small callable ``step index → task name`` (as fastai's schedules are callables of
training progress); ``Alternating`` is the loss term that trains only that task's head (and
the shared trunk) at each step:

.. math::  \\mathcal L^{(s)} = \\mathcal L_{\\tau(s)}, \\qquad \\tau: \\mathbb N \\to \\{1..T\\},

so that over a cycle each task contributes in proportion to how often τ names it; contrast with
hard sharing, which minimises ``Σ_t L_t`` at every step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor

from transferlab.train.terms import LossTerm, Step

Schedule = Callable[[int], str]


class RoundRobin:
    """``τ(s) = tasks[s mod T]``: every task in turn."""

    def __init__(self, tasks: Sequence[str]):
        if not tasks:
            raise ValueError("a schedule needs at least one task")
        self.tasks = list(tasks)

    def __call__(self, step: int) -> str:
        return self.tasks[step % len(self.tasks)]


class BySize:
    """Each task in proportion to its number of samples ``n_t``: at step s the task furthest
    behind its share, ``τ(s) = argmax_t [(s + 1) n_t / Σ_u n_u − c_t(s)]``, where ``c_t(s)`` counts
    the steps it had so far (ties to the first task).  Deterministic; after s steps every task has
    had ``s n_t / Σ n`` steps, within one."""

    def __init__(self, sizes: Mapping[str, int]):
        if not sizes or any(n <= 0 for n in sizes.values()):
            raise ValueError(f"sizes must be positive sample counts per task, got {dict(sizes)}")
        self.tasks = list(sizes)
        total = sum(sizes.values())
        self.shares = [sizes[t] / total for t in self.tasks]
        self._picks: list[int] = []
        self._counts = [0] * len(self.tasks)

    def __call__(self, step: int) -> str:
        if step < 0:
            raise ValueError(f"step must be non-negative, got {step}")
        while len(self._picks) <= step:
            s = len(self._picks)
            behind = [(s + 1) * p - c for p, c in zip(self.shares, self._counts)]
            i = max(range(len(behind)), key=lambda j: (behind[j], -j))
            self._counts[i] += 1
            self._picks.append(i)
        return self.tasks[self._picks[step]]


class Alternating(LossTerm):
    """Loss term: the loss of the one task that ``schedule`` names at this step (its samples in
    the batch; a batch without one gives 0).  Replaces the Trainer's sum of task losses.

    Raises:
        ValueError: the schedule names a task with no head.
    """

    replaces_supervised = True
    name = "alternating"

    def __init__(self, schedule: Callable[[int], str]):
        super().__init__()
        self.schedule = schedule

    def forward(self, step: Step) -> Tensor:
        task = self.schedule(step.step)
        if task not in step.task_losses:
            raise ValueError(
                f"the schedule names task {task!r} at step {step.step}, but the model has no head "
                f"for it (its heads: {sorted(step.task_losses)})"
            )
        return step.task_losses[task]
