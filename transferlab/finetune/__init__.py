"""Fine-tuning tools (page ``book/finetune.md``).

Freezing, linear probing, discriminative learning rates, gradual unfreezing and the L2-SP
penalty of Li et al. (2018).  Every function works on any model with ``features`` and ``head``
(f = g ∘ h); name patterns are ``fnmatch`` patterns over ``named_parameters`` names.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatch

from torch import Tensor, nn

from transferlab.models.protocol import require_split
from transferlab.train.callbacks import Callback
from transferlab.train.terms import LossTerm, Step

__all__ = [
    "L2SP",
    "GradualUnfreezing",
    "blocks",
    "discriminative_lr_groups",
    "freeze",
    "l2sp_penalty",
    "linear_probe",
    "trainable_names",
    "unfreeze",
]


def _select(
    model: nn.Module, patterns: str | Iterable[str] | None
) -> list[tuple[str, nn.Parameter]]:
    if patterns is None:
        return list(model.named_parameters())
    pats = [patterns] if isinstance(patterns, str) else list(patterns)
    chosen = [(n, p) for n, p in model.named_parameters() if any(fnmatch(n, pat) for pat in pats)]
    if not chosen:
        names = [n for n, _ in model.named_parameters()]
        raise ValueError(f"no parameter matches {pats}; the model's parameters are {names}")
    return chosen


def freeze(model: nn.Module, patterns: str | Iterable[str] | None = None) -> list[str]:
    """Stop gradients for the parameters whose names match ``patterns`` (all if ``None``).

    Example: ``freeze(model, "features.*")`` freezes the feature extractor h.
    Returns the names frozen.
    """
    chosen = _select(model, patterns)
    for _, p in chosen:
        p.requires_grad_(False)
    return [n for n, _ in chosen]


def unfreeze(model: nn.Module, patterns: str | Iterable[str] | None = None) -> list[str]:
    """Let gradients flow again into the parameters matching ``patterns`` (all if ``None``)."""
    chosen = _select(model, patterns)
    for _, p in chosen:
        p.requires_grad_(True)
    return [n for n, _ in chosen]


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the parameters that currently receive gradients."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def linear_probe(model: nn.Module) -> nn.Module:
    """Feature extraction: freeze ``features``, train only ``head``. Returns ``model``.

    The BatchNorm layers of ``features`` (a pretrained ResNet's) are then frozen as well: the
    Trainer keeps a BatchNorm whose parameters are all frozen in eval mode, so its running
    statistics stay the pretrained ones (:func:`transferlab.train.trainer.train_mode` says why).
    """
    freeze(model, "features.*")
    unfreeze(model, "head.*")
    return model


def blocks(model: nn.Module) -> list[nn.Module]:
    """The layers of ``model.features`` that hold parameters, input side first, then ``head``."""
    features, head = require_split(model, "blocks")
    layers = [m for m in features.children() if any(True for _ in m.parameters())]
    return layers + [head]


def discriminative_lr_groups(model: nn.Module, lr: float, decay: float = 0.3) -> list[dict]:
    """Optimiser parameter groups with learning rates that shrink towards the input.

    The head gets ``lr``; the block below it ``lr · decay``, the next ``lr · decay²``, and so on
    (ULMFiT's discriminative fine-tuning): early, generic layers move least.

    Returns:
        a list of ``{"params": [...], "lr": float}`` dicts for any ``torch.optim`` optimiser
        (pass it as ``Trainer(..., params=groups)``).
    """
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    layers = blocks(model)
    n = len(layers)
    return [
        {"params": list(m.parameters()), "lr": lr * decay ** (n - 1 - i)}
        for i, m in enumerate(layers)
    ]


class GradualUnfreezing(Callback):
    """A Trainer callback: start with only the head trainable, then unfreeze one more block
    (from the top down) every ``every`` epochs (Howard & Ruder 2018).

    Use with an optimiser that holds every parameter (frozen ones simply get no gradient).
    """

    def __init__(self, every: int = 1):
        if every < 1:
            raise ValueError(f"every must be >= 1 epoch, got {every}")
        self.every = every

    def on_epoch_start(self, trainer, epoch: int) -> None:
        layers = blocks(trainer.model)
        n_trainable = min(len(layers), 1 + epoch // self.every)
        for i, m in enumerate(layers):
            m.requires_grad_(i >= len(layers) - n_trainable)


def l2sp_penalty(model: nn.Module, reference: dict[str, Tensor], alpha: float) -> Tensor:
    """The L2-SP penalty ``α/2 · ‖θ − θ₀‖²`` over the parameters shared with the source.

    Args:
        model: the model being fine-tuned.
        reference: ``{name: θ₀}``, the source's values of the shared parameters (typically
            ``features.*``; never the new head, whose shape and meaning differ).
        alpha: the strength α.
    Returns:
        a scalar tensor (differentiable with respect to the model's parameters).
    """
    params = dict(model.named_parameters())
    missing = [n for n in reference if n not in params]
    if missing:
        raise KeyError(f"reference parameters {missing} are not in the model")
    total = sum(((params[n] - ref.to(params[n].device)) ** 2).sum() for n, ref in reference.items())
    return 0.5 * alpha * total


class L2SP(LossTerm):
    r"""Loss term for :class:`~transferlab.train.trainer.Trainer`: the L2-SP regulariser of Li et
    al. (2018),

    .. math:: \Omega(\theta) = \frac{\alpha}{2}\lVert\theta_S - \theta_S^0\rVert^2
              + \frac{\beta}{2}\lVert\theta_{\bar S}\rVert^2 ,

    where :math:`\theta_S` are the parameters shared with the source (those matching
    ``include``, default ``features.*``), pulled towards their starting point
    :math:`\theta_S^0`, and :math:`\theta_{\bar S}` the others (the new head), which get plain
    weight decay of strength β (0 by default: then they are free).

    The starting point is copied from ``model`` when the term is built, so build it right
    after loading the source weights.  Logged as ``l2sp``.

    Example::

        target = new_head(source, 10)
        trainer = Trainer(target, loss_terms=[L2SP(target, alpha=0.01, beta=0.01)])
    """

    name = "l2sp"

    def __init__(
        self,
        model: nn.Module,
        alpha: float,
        include: str | Iterable[str] = "features.*",
        beta: float = 0.0,
    ):
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be non-negative, got alpha={alpha}, beta={beta}")
        super().__init__()
        self.alpha, self.beta = alpha, beta
        self.reference = {n: p.detach().clone() for n, p in _select(model, include)}

    def forward(self, step: Step) -> Tensor:
        device = next(step.model.parameters()).device
        if any(r.device != device for r in self.reference.values()):
            self.reference = {n: r.to(device) for n, r in self.reference.items()}
        penalty = l2sp_penalty(step.model, self.reference, self.alpha)
        if self.beta:
            new = [
                p
                for n, p in step.model.named_parameters()
                if n not in self.reference and p.requires_grad
            ]
            penalty = penalty + 0.5 * self.beta * sum((p**2).sum() for p in new)
        return penalty
