"""Do the tasks pull the shared trunk the same way?  The cosine similarity of task gradients.

For tasks a, b with losses L_a, L_b and the shared parameters ψ (the trunk h):

.. math::  \\cos(a, b) = \\frac{\\langle \\nabla_\\psi L_a, \\nabla_\\psi L_b \\rangle}
                            {\\lVert \\nabla_\\psi L_a \\rVert \\,
                             \\lVert \\nabla_\\psi L_b \\rVert}

Near +1 the tasks help each other; around 0 they are unrelated (each uses the trunk's capacity
for itself); below 0 a step for one task undoes the other's: negative transfer *between tasks*.
``GradientCosine`` measures it during training as a step callback and plots it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transferlab.models.protocol import FeaturesAndLogits, unwrap
from transferlab.train.batch import Batch
from transferlab.train.callbacks import Callback
from transferlab.train.supervised import masked_cross_entropy


def task_gradients(
    losses: Mapping[str, Tensor], params: Sequence[nn.Parameter]
) -> dict[str, Tensor]:
    """``{task: ∇_ψ L_t}`` flattened to ``(P,)``, P the number of entries of ``params`` (a
    parameter the task does not reach has gradient 0).  Leaves ``.grad`` untouched."""
    out = {}
    for task, loss in losses.items():
        grads = torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)
        out[task] = torch.cat(
            [
                (torch.zeros_like(p) if g is None else g).flatten().float()
                for p, g in zip(params, grads)
            ]
        )
    return out


def gradient_cosine(grads: Mapping[str, Tensor]) -> dict[tuple[str, str], float]:
    """Cosine similarity of every pair of task gradients ``{task: (P,)}``:
    ``{(a, b): cos}`` for a before b in ``grads``' order (0 where a gradient is zero)."""
    return {
        (a, b): float(F.cosine_similarity(grads[a], grads[b], dim=0, eps=1e-12))
        for a, b in itertools.combinations(grads, 2)
    }


def batch_task_losses(model: nn.Module, batch: Batch) -> dict[str, Tensor]:
    """The masked cross-entropy of each head of a multi-head ``model`` on ``batch`` (with graph)."""
    _, logits = FeaturesAndLogits(unwrap(model))(batch.x)
    if not isinstance(logits, dict):
        raise TypeError("gradient cosines need a multi-head model (a ModuleDict head)")
    return {
        t: masked_cross_entropy(v, batch.y if t == "y" else batch.groups[t])
        for t, v in logits.items()
    }


class GradientCosine(Callback):
    """Step callback: every ``every`` steps, the cosine of the task gradients on the shared
    parameters, measured on that step's batch just after the optimiser step.

    Args:
        every: measure at steps 0, every, 2·every, …
        params: the shared parameters ψ (default: those of ``model.features``, the trunk h).

    Attributes:
        steps: the steps measured; values: ``{(a, b): [cos at each measured step]}``.

    Use: ``cos = GradientCosine(every=5); Trainer(model, callbacks=[cos]).fit(...); cos.plot()``.
    """

    def __init__(self, every: int = 5, params: Iterable[nn.Parameter] | None = None):
        if every < 1:
            raise ValueError(f"every must be a positive number of steps, got {every}")
        self.every = every
        self.params = None if params is None else list(params)
        self.steps: list[int] = []
        self.values: dict[tuple[str, str], list[float]] = {}

    def on_step_end(self, trainer, step, parts) -> None:
        if step.step % self.every:
            return
        model = unwrap(trainer.model)
        params = self.params if self.params is not None else list(model.features.parameters())
        with torch.enable_grad():
            cos = gradient_cosine(task_gradients(batch_task_losses(model, step.batch), params))
        self.steps.append(step.step)
        for pair, c in cos.items():
            self.values.setdefault(pair, []).append(c)

    def mean(self, pair: tuple[str, str] | None = None) -> float:
        """Mean cosine over the measured steps (of the first pair by default)."""
        pair = pair or next(iter(self.values))
        v = self.values[pair]
        return sum(v) / len(v)

    def plot(self, ax=None, label: str | None = None, smooth: int = 1):
        """Cosine against step, one line per pair (a running mean over ``smooth`` measurements)."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        for pair, v in self.values.items():
            y = torch.tensor(v)
            if smooth > 1 and len(v) >= smooth:
                y = torch.nn.functional.avg_pool1d(y.view(1, 1, -1), smooth, 1).flatten()
                x = self.steps[smooth - 1 :]
            else:
                x = self.steps
            ax.plot(x, y.tolist(), label=label or f"{pair[0]} · {pair[1]}")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("cosine of task gradients on h")
        return ax
