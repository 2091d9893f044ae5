"""Domain adaptation losses as small modules, and the Trainer term that applies them.

Each loss is called as ``loss(source, target)`` on features ``(N, D)`` (alignment: MMD, CORAL,
DANN), on logits ``(N, C)`` (self-training, entropy, MCC) or on both (CDAN).  :class:`AdaptTerm`
adds ``weight · loss(source, target)`` to the Trainer's objective, on the features or logits of the
labelled source batch and of the unlabelled target batch that the Trainer draws at every step
(``Trainer.fit(source.train, unlabelled=target.train)``).  Chapter "Domain adaptation".
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transferlab.adapt.alignment import coral_loss, mmd_loss
from transferlab.adapt.grl import grad_reverse
from transferlab.train.terms import LossTerm, Step


class AdaptLoss(nn.Module):
    """Base of the adaptation losses: ``loss(source, target)`` on what ``on`` names
    (``"features"``, ``"logits"`` or ``"features+logits"``), logged under ``name``;
    :meth:`set_progress` (a no-op here) receives the fraction of training done, for schedules
    such as DANN's λ."""

    name: str = "adapt"
    on: str = "features"

    def set_progress(self, p: float) -> None:
        """Called by :class:`AdaptTerm` before each step with ``p`` in [0, 1]."""


class MMDLoss(AdaptLoss):
    """Multi-kernel MMD² between source and target features (Long et al. 2015); see
    :func:`~transferlab.adapt.alignment.mmd_loss`. ``(N, D), (M, D) →`` scalar."""

    name = "mmd"
    on = "features"

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        return mmd_loss(source, target)


class CORALLoss(AdaptLoss):
    """Deep CORAL (Sun & Saenko 2016): ``‖C_S − C_T‖_F² / (4d²)``. ``(N, D), (M, D) →`` scalar."""

    name = "coral"
    on = "features"

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        return coral_loss(source, target)


def discriminator(in_dim: int, hidden: int = 256, layers: int = 2) -> nn.Sequential:
    """A domain discriminator: ``layers`` hidden ReLU layers of width ``hidden``, then one logit
    (``(N, in_dim) → (N, 1)``); ``layers=2, hidden=256`` is the shape of Ganin et al. (2016)
    scaled to this book's 128-dimensional features."""
    dims = [in_dim] + [hidden] * layers
    blocks: list[nn.Module] = []
    for a, b in itertools.pairwise(dims):
        blocks += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*blocks, nn.Linear(dims[-1], 1))


def dann_lambda(p: float, max_lambda: float = 1.0) -> float:
    r""":math:`\lambda_p = \lambda_{\max}\,(2 / (1 + e^{-10 p}) - 1)`, the warm-up of Ganin et al.
    (2016): 0 at the start (``p = 0``), :math:`0.9999\,\lambda_{\max}` at the end."""
    return max_lambda * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)


def _domain_loss(
    logits: Tensor, n_source: int, weight: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """BCE of the discriminator's logits against the domain labels (source 0, target 1), and its
    accuracy (detached)."""
    domain = torch.cat([torch.zeros(n_source), torch.ones(len(logits) - n_source)]).to(
        logits.device
    )
    loss = F.binary_cross_entropy_with_logits(logits.float(), domain, weight=weight)
    acc = ((logits.detach() > 0).float() == domain).float().mean()
    return loss, acc


class DANNLoss(AdaptLoss):
    r"""Domain-adversarial loss of DANN (Ganin et al. 2016).

    .. math::
        L_d = \mathrm{BCE}\big(d(R_\lambda(h_s)), 0\big)
        + \mathrm{BCE}\big(d(R_\lambda(h_t)), 1\big)

    with :math:`R_\lambda` the gradient reversal layer: the discriminator ``d`` minimises
    :math:`L_d` while the features upstream of :math:`R_\lambda` maximise it.  λ follows the
    warm-up of the paper, :func:`dann_lambda` (``set_progress(p)``, which :class:`AdaptTerm`
    calls with the fraction ``p`` of training done).

    Args:
        feature_dim: D. hidden, layers: the discriminator's shape (:func:`discriminator`).
        max_lambda: :math:`\lambda_{\max}`.

    Shapes: ``source`` ``(N, D)``, ``target`` ``(M, D)`` → ``(loss, {"disc_acc", "lambda"})``.
    """

    name = "dann"
    on = "features"

    def __init__(
        self, feature_dim: int, hidden: int = 256, layers: int = 2, max_lambda: float = 1.0
    ):
        super().__init__()
        self.discriminator = discriminator(feature_dim, hidden, layers)
        self.max_lambda = max_lambda
        self.lambd = 0.0

    def set_progress(self, p: float) -> None:
        self.lambd = dann_lambda(p, self.max_lambda)

    def forward(self, source: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.discriminator(grad_reverse(torch.cat([source, target]), self.lambd)).squeeze(
            1
        )
        loss, acc = _domain_loss(logits, len(source))
        return loss, {"disc_acc": acc, "lambda": torch.tensor(self.lambd)}


class CDANLoss(DANNLoss):
    r"""Conditional adversarial loss of CDAN (Long et al. 2018): the discriminator sees the
    outer product of the features and the class predictions,

    .. math::
        T(h, g) = h \otimes \mathrm{softmax}(g) \in \mathbb{R}^{D \cdot C}, \qquad
        L_d = \mathrm{BCE}\big(d(R_\lambda(T_s)), 0\big)
        + \mathrm{BCE}\big(d(R_\lambda(T_t)), 1\big),

    so aligning the domains means aligning each class's features with the same class's (a
    marginal alignment, DANN's, may map target 4s onto source 9s).  With ``entropy=True``
    (CDAN+E) each sample is weighted by :math:`1 + e^{-H(p)}` (normalised within its domain):
    confident predictions count more.  The predictions are detached, as in the paper's code.

    Args:
        feature_dim: D. num_classes: C. hidden, layers, max_lambda: as :class:`DANNLoss`.

    Shapes: ``source`` ``((N, D), (N, C))``, ``target`` ``((M, D), (M, C))`` →
    ``(loss, {"disc_acc", "lambda"})``.
    """

    name = "cdan"
    on = "features+logits"

    def __init__(
        self,
        feature_dim: int,
        num_classes: int = 10,
        hidden: int = 256,
        layers: int = 2,
        max_lambda: float = 1.0,
        entropy: bool = False,
    ):
        super().__init__(feature_dim * num_classes, hidden, layers, max_lambda)
        self.num_classes, self.entropy = num_classes, entropy

    def forward(
        self, source: tuple[Tensor, Tensor], target: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        feats = torch.cat([source[0], target[0]])
        probs = torch.cat([source[1], target[1]]).detach().float().softmax(1)
        if probs.shape[1] != self.num_classes:
            raise ValueError(
                f"CDAN was built for {self.num_classes} classes, the logits have {probs.shape[1]}"
            )
        joint = torch.bmm(probs.unsqueeze(2), feats.float().unsqueeze(1)).flatten(1)  # (N+M, C·D)
        logits = self.discriminator(grad_reverse(joint, self.lambd)).squeeze(1)
        weight = None
        if self.entropy:
            n = len(source[0])
            w = 1.0 + torch.exp((probs * torch.log(probs + 1e-5)).sum(1))
            weight = torch.cat([w[:n] / w[:n].sum(), w[n:] / w[n:].sum()]) * len(w) / 2
        loss, acc = _domain_loss(logits, len(source[0]), weight)
        return loss, {"disc_acc": acc, "lambda": torch.tensor(self.lambd)}


class SelfTrainingLoss(AdaptLoss):
    """Confidence-thresholded pseudo-labels: cross-entropy of the target logits against their own
    argmax, on the samples whose softmax confidence exceeds ``threshold`` (Lee 2013).

    Shapes: ``source`` (unused) ``(N, C)``, ``target`` ``(M, C)`` → ``(loss, {"kept"})``.
    """

    name = "self_training"
    on = "logits"

    def __init__(self, threshold: float = 0.9):
        super().__init__()
        self.threshold = threshold

    def forward(self, source: Tensor, target: Tensor) -> tuple[Tensor, dict[str, float]]:
        probs = target.detach().softmax(1)
        conf, pseudo = probs.max(1)
        keep = conf >= self.threshold
        if not keep.any():
            return target.sum() * 0.0, {"kept": torch.zeros(())}
        loss = F.cross_entropy(target[keep], pseudo[keep], reduction="sum") / len(target)
        return loss, {"kept": keep.float().mean()}


class EntropyLoss(AdaptLoss):
    r"""Information maximisation (as in SHOT, Liang et al. 2020): the mean entropy of the target
    predictions minus the entropy of their mean, so that each prediction is confident while all
    classes stay in use.  ``(N, C), (M, C) →`` scalar."""

    name = "entropy"
    on = "logits"

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        p = target.softmax(1)
        cond = -(p * F.log_softmax(target, 1)).sum(1).mean()
        mean_p = p.mean(0)
        marginal = -(mean_p * torch.log(mean_p + 1e-8)).sum()
        return cond - marginal


class MCCLoss(AdaptLoss):
    r"""Minimum Class Confusion (Jin et al. 2020) on the target logits ``Z`` ``(B, C)``.

    .. math::
        \hat Y = \mathrm{softmax}(Z / T), \quad
        w_i = B\,\frac{1 + e^{-H(\hat y_i)}}{\sum_{i'} (1 + e^{-H(\hat y_{i'})})}, \quad
        M = \hat Y^\top \mathrm{diag}(w)\, \hat Y, \\
        \tilde M_{jj'} = M_{jj'} / \textstyle\sum_{j''} M_{jj''}, \quad
        L = \frac{1}{C} \sum_j \sum_{j' \ne j} \tilde M_{jj'}

    ``M`` counts, over the batch, how often the model puts mass on class *j* and class *j'*
    at once (weighted towards confident samples, ``H`` the entropy); ``L`` is the share of
    that mass off the diagonal: the model's confusion between classes on the target.  It
    needs no discriminator and no source batch.

    Args:
        temperature: ``T`` (the paper uses 2.5).

    Shapes: ``source`` (unused) ``(N, C)``, ``target`` ``(B, C)`` → scalar in ``[0, 1)``.
    """

    name = "mcc"
    on = "logits"

    def __init__(self, temperature: float = 2.5):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"MCC temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        b, c = target.shape
        p = F.softmax(target.float() / self.temperature, dim=1)
        h = -(p * torch.log(p + 1e-5)).sum(1)
        w = 1.0 + torch.exp(-h)
        w = (b * w / w.sum()).detach()
        m = (p * w.unsqueeze(1)).T @ p
        m = m / m.sum(1, keepdim=True)
        return (m.sum() - m.trace()) / c


class AdaptTerm(LossTerm):
    """A Trainer loss term: ``weight · loss(source, target)`` between the labelled batch and the
    unlabelled batch of the same step (it holds no data: pass ``unlabelled=`` to ``fit``).

    Args:
        loss: one of the losses above, an :class:`AdaptLoss` (its ``on`` says features or
            logits; its ``set_progress(p)``, DANN's λ schedule, is called with the fraction of
            training done).
        weight: the loss weight.
    """

    needs_unlabelled = True

    def __init__(self, loss: nn.Module, weight: float = 1.0):
        super().__init__()
        if not isinstance(weight, (int, float)):
            raise TypeError(
                f"AdaptTerm(loss, weight): weight must be a number, got {type(weight).__name__} "
                "(target images are no longer given here: pass them to fit(..., unlabelled=...))"
            )
        if not isinstance(loss, AdaptLoss):
            raise TypeError(
                f"AdaptTerm(loss, weight): loss must be an AdaptLoss (with `name` and `on`), got "
                f"{type(loss).__name__}; subclass transferlab.adapt.losses.AdaptLoss"
            )
        self.loss, self.weight = loss, weight
        self.name = loss.name

    def set_progress(self, p: float) -> None:
        self.loss.set_progress(p)

    def forward(self, step: Step) -> tuple[Tensor, dict]:
        if step.unlabelled_features is None and step.unlabelled_logits is None:
            raise ValueError(
                f"{self.name}: no unlabelled batch in this step; "
                "pass fit(train, unlabelled=target.train)"
            )
        if self.loss.on == "logits":
            out = self.loss(step.logits, step.unlabelled_logits)
        elif self.loss.on == "features":
            out = self.loss(step.features, step.unlabelled_features)
        else:  # "features+logits" (CDAN)
            out = self.loss(
                (step.features, step.logits), (step.unlabelled_features, step.unlabelled_logits)
            )
        value, extra = out if isinstance(out, tuple) else (out, {})
        return self.weight * value, extra


#: Method name → loss factory ``(feature_dim, **options) → loss module``.
METHODS = {
    "mmd": lambda d, **kw: MMDLoss(**kw),
    "coral": lambda d, **kw: CORALLoss(**kw),
    "dann": lambda d, **kw: DANNLoss(d, **kw),
    "cdan": lambda d, **kw: CDANLoss(d, **kw),
    "self_training": lambda d, **kw: SelfTrainingLoss(**kw),
    "entropy": lambda d, **kw: EntropyLoss(**kw),
    "mcc": lambda d, **kw: MCCLoss(**kw),
}


def make_term(method: str, feature_dim: int, weight: float = 1.0, **options) -> AdaptTerm:
    """The Trainer term for a method by name (train with ``fit(..., unlabelled=target.train)``);
    ``options`` go to the loss (e.g. ``max_lambda=0.3`` for DANN, ``temperature=2.5`` for MCC).

    Raises:
        ValueError: unknown method (never a silent zero loss).
    """
    if method not in METHODS:
        raise ValueError(
            f"unknown adaptation method {method!r}; choose one of {', '.join(METHODS)}"
        )
    return AdaptTerm(METHODS[method](feature_dim, **options), weight)
