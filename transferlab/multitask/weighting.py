"""Task weighting: how the task losses L_t add up to the one loss that trains a multi-task model.

Each weighting is a loss term (``transferlab.train.trainer``) with ``replaces_supervised =
True``: it receives the masked cross-entropy of every head as ``step.task_losses`` and returns
the whole supervised loss, so it plugs into ``Trainer`` with
``loss_terms=[weighting]`` and no copy of the loop.  Its parameters (log-variances, GradNorm's
weights) are optimised with the model's; give them a learning rate of their own with a parameter
group (``params=[{"params": model.parameters()}, {"params": w.parameters(), "lr": 0.05}]``).

- ``StaticWeights``: ``L = Σ_t w_t L_t`` (``w_t = 1``: equal weighting);
- ``UncertaintyWeighting`` (Kendall et al. 2018);
- ``GradNorm`` (Chen et al. 2018).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from transferlab.models.protocol import unwrap
from transferlab.train.terms import LossTerm


class TaskWeighting(LossTerm):
    """Base class: the task names, and clear errors when they do not match the model's heads."""

    replaces_supervised = True

    def __init__(self, tasks: Sequence[str]):
        super().__init__()
        tasks = list(tasks)
        if not tasks:
            raise ValueError("task weighting needs at least one task name")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"task names must be distinct, got {tasks}")
        self.tasks = tasks

    def losses(self, step) -> Tensor:
        """The task losses ``(T,)`` in the order of ``tasks``.

        Raises:
            ValueError: a task with no head, or a head with no weight.
        """
        have = step.task_losses
        if missing := [t for t in self.tasks if t not in have]:
            raise ValueError(
                f"{type(self).__name__}: task(s) {missing} have no head in the model "
                f"(its heads: {sorted(have)}); name one head per task"
            )
        if extra := [t for t in have if t not in self.tasks]:
            raise ValueError(
                f"{type(self).__name__} weighs tasks {self.tasks} but the model also has head(s) "
                f"{extra}: give one weight per head ({len(have)} tasks)"
            )
        return torch.stack([have[t] for t in self.tasks])


class StaticWeights(TaskWeighting):
    """Fixed task weights: ``L = Σ_t w_t L_t``; equal weighting is ``w_t = 1``.

    Args:
        tasks: the task names (the model's head names).
        weights: ``(T,)`` a sequence (in the order of ``tasks``) or ``{task: w_t}``; default 1.

    Raises:
        ValueError: weights of another length than ``tasks``, or naming other tasks.
    """

    def __init__(
        self, tasks: Sequence[str], weights: Sequence[float] | Mapping[str, float] | None = None
    ):
        super().__init__(tasks)
        if weights is None:
            w = [1.0] * len(self.tasks)
        elif isinstance(weights, Mapping):
            if set(weights) != set(self.tasks):
                raise ValueError(
                    f"task weights name {sorted(weights)} but the tasks are {sorted(self.tasks)}"
                )
            w = [float(weights[t]) for t in self.tasks]
        else:
            w = [float(v) for v in weights]
            if len(w) != len(self.tasks):
                raise ValueError(
                    f"got {len(w)} task weight(s) for {len(self.tasks)} tasks {self.tasks}: "
                    "give one weight per task, in the same order"
                )
        self.register_buffer("weights", torch.tensor(w))

    def forward(self, step) -> Tensor:
        return (self.weights * self.losses(step)).sum()


class UncertaintyWeighting(TaskWeighting):
    """Uncertainty weighting (Kendall, Gal & Cipolla 2018), classification form, with a learnt
    log-variance ``s_t = log σ_t²`` per task:

    .. math::  \\mathcal L = \\sum_t e^{-s_t} \\mathcal L_t + \\tfrac12 s_t

    (from ``L_t/σ_t² + log σ_t``).  For a fixed L_t the optimum is ``e^{-s_t} = 1 / (2 L_t)``: a
    task whose loss stays high (noisy, or unrelated to the others) is weighed down, and the
    ``½ s_t`` term keeps the weights from all going to 0.

    Args:
        tasks: the task names; init: the initial ``s_t`` (0: weight 1).

    Attributes:
        log_vars: ``(T,)`` learnable ``s_t``.
    """

    def __init__(self, tasks: Sequence[str], init: float = 0.0):
        super().__init__(tasks)
        self.log_vars = nn.Parameter(torch.full((len(self.tasks),), float(init)))

    def weights(self) -> Tensor:
        """The current weights ``e^{-s_t}``, ``(T,)``, detached."""
        return torch.exp(-self.log_vars.detach())

    def forward(self, step) -> tuple[Tensor, dict[str, Tensor]]:
        s = self.log_vars
        total = (torch.exp(-s) * self.losses(step) + 0.5 * s).sum()
        return total, {f"w_{t}": w for t, w in zip(self.tasks, self.weights())}


def last_shared_layer(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of the last layer of ``model.features`` that has any (GradNorm's W)."""
    layers = [
        m
        for m in unwrap(model).features.modules()
        if any(True for _ in m.parameters(recurse=False))
    ]
    if not layers:
        raise ValueError("the model's features have no parameters to measure task gradients on")
    return list(layers[-1].parameters(recurse=False))


class GradNorm(TaskWeighting):
    """GradNorm (Chen et al. 2018): learnt weights ``w_t`` that give every task a gradient on the
    shared layer W of a norm in proportion to how slowly it trains.

    With ``G_t = ‖∇_W w_t L_t‖₂``, ``Ḡ = mean_t G_t``, the inverse training rate
    ``r_t = (L_t / L_t(0)) / mean_u (L_u / L_u(0))`` and an asymmetry ``α``:

    .. math::  \\mathcal L = \\sum_t w_t \\mathcal L_t
               \\;(\\text{for } h, g_t), \\qquad
               \\mathcal L_{\\mathrm{grad}} = \\sum_t
               \\bigl| G_t - \\operatorname{sg}[\\bar G\\, r_t^{\\alpha}] \\bigr|
               \\;(\\text{for } w \\text{ only}),

    and after each step the weights are renormalised to ``Σ_t w_t = T`` (done at the next call).
    ``sg`` is stop-gradient; the returned loss is ``Σ_t sg[w_t] L_t + L_grad`` with
    ``G_t = w_t ‖∇_W L_t‖`` (the norm detached), so that L_grad reaches only the weights.

    Args:
        tasks: the task names; alpha: the asymmetry α (1.5 in the paper).
        shared: ``model → parameters`` of W (default ``last_shared_layer``).
    """

    def __init__(
        self,
        tasks: Sequence[str],
        alpha: float = 1.5,
        shared: Callable[[nn.Module], list[nn.Parameter]] = last_shared_layer,
    ):
        super().__init__(tasks)
        self.alpha, self.shared = float(alpha), shared
        self.w = nn.Parameter(torch.ones(len(self.tasks)))
        self.register_buffer("initial", torch.zeros(len(self.tasks)))

    def weights(self) -> Tensor:
        """The current weights ``w_t``, ``(T,)``, detached."""
        return self.w.detach().clone()

    def forward(self, step) -> tuple[Tensor, dict[str, Tensor]]:
        losses = self.losses(step)
        with torch.no_grad():  # renormalise after the previous optimiser step: Σ w = T
            self.w.clamp_(min=1e-3)
            self.w.mul_(len(self.tasks) / self.w.sum())
            fresh = self.initial == 0
            self.initial[fresh] = losses.detach().float()[fresh]
        params = self.shared(step.model)
        norms = []
        for loss in losses:
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            squares = [(g.float() ** 2).sum() for g in grads if g is not None]
            norms.append(torch.stack(squares).sum().sqrt() if squares else losses.new_zeros(()))
        g = torch.stack(norms).detach()
        big_g = self.w * g
        ratio = losses.detach() / self.initial.clamp(min=1e-12)
        target = (big_g.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
        l_grad = (big_g - target).abs().sum()
        total = (self.w.detach() * losses).sum() + l_grad
        return total, {
            "l_grad": l_grad.detach(),
            **{f"w_{t}": w for t, w in zip(self.tasks, self.weights())},
        }
