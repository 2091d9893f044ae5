"""Domain adaptation losses as small modules, and the Trainer term that applies them.

Each loss is called as ``loss(source, target)`` on features ``(N, D)`` (alignment: MMD, CORAL,
DANN) or on logits ``(N, C)`` (self-training, entropy).  :class:`AdaptTerm` adds
``weight · loss(source, target)`` to the Trainer's objective, on the features or logits of the
labelled source batch and of the unlabelled target batch that the Trainer draws at every step
(``Trainer.fit(source.train, unlabelled=target.train)``).  Chapter "Domain adaptation".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transferlab.adapt.alignment import coral_loss, mmd_loss
from transferlab.adapt.grl import grad_reverse


class MMDLoss(nn.Module):
    """Multi-kernel MMD² between source and target features (Long et al. 2015); see
    :func:`~transferlab.adapt.alignment.mmd_loss`. ``(N, D), (M, D) →`` scalar."""

    name = "mmd"
    on = "features"

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        return mmd_loss(source, target)


class CORALLoss(nn.Module):
    """Deep CORAL (Sun & Saenko 2016): ``‖C_S − C_T‖_F² / (4d²)``. ``(N, D), (M, D) →`` scalar."""

    name = "coral"
    on = "features"

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        return coral_loss(source, target)


class DANNLoss(nn.Module):
    r"""Domain-adversarial loss of DANN (Ganin et al. 2016).

    .. math::
        L_d = \mathrm{BCE}\big(d(R_\lambda(f_s)), 0\big) + \mathrm{BCE}\big(d(R_\lambda(f_t)), 1\big)

    with :math:`R_\lambda` the gradient reversal layer: the discriminator ``d`` minimises
    :math:`L_d` while the features upstream of :math:`R_\lambda` maximise it.  λ follows the
    warm-up of the paper, :math:`\lambda_p = \lambda_{\max}(2 / (1 + e^{-10 p}) - 1)` with ``p``
    the fraction of training done (``set_progress(p)``; :class:`AdaptTerm` calls it).

    Args:
        feature_dim: D. hidden: width of the discriminator's hidden layer.
        max_lambda: :math:`\lambda_{\max}`.

    Shapes: ``source`` ``(N, D)``, ``target`` ``(M, D)`` → ``(loss, {"disc_acc", "lambda"})``.
    """

    name = "dann"
    on = "features"

    def __init__(self, feature_dim: int, hidden: int = 64, max_lambda: float = 1.0):
        super().__init__()
        self.discriminator = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.max_lambda = max_lambda
        self.lambd = 0.0

    def set_progress(self, p: float) -> None:
        self.lambd = self.max_lambda * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)

    def forward(self, source: Tensor, target: Tensor) -> tuple[Tensor, dict[str, float]]:
        feats = grad_reverse(torch.cat([source, target]), self.lambd)
        logits = self.discriminator(feats).squeeze(1)
        domain = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(logits.device)
        loss = F.binary_cross_entropy_with_logits(logits, domain)
        acc = ((logits.detach() > 0).float() == domain).float().mean()
        return loss, {"disc_acc": acc, "lambda": torch.tensor(self.lambd)}


class SelfTrainingLoss(nn.Module):
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


class EntropyLoss(nn.Module):
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


class AdaptTerm(nn.Module):
    """A Trainer loss term: ``weight · loss(source, target)`` between the labelled batch and the
    unlabelled batch of the same step (it holds no data: pass ``unlabelled=`` to ``fit``).

    Args:
        loss: one of the losses above (its ``on`` says features or logits; a ``set_progress(p)``
            method, as DANN's λ schedule has, is called with the fraction of training done).
        weight: the loss weight.
    """

    needs_unlabelled = True

    def __init__(self, loss: nn.Module, weight: float = 1.0):
        super().__init__()
        if not isinstance(weight, (int, float)):
            raise TypeError(f"AdaptTerm(loss, weight): weight must be a number, got {type(weight).__name__} "
                            "(target images are no longer given here: pass them to fit(..., unlabelled=...))")
        self.loss, self.weight = loss, weight
        self.name = loss.name

    def forward(self, step) -> tuple[Tensor, dict]:
        if step.unlabelled_features is None and step.unlabelled_logits is None:
            raise ValueError(f"{self.name}: no unlabelled batch in this step; pass fit(train, unlabelled=target.train)")
        if hasattr(self.loss, "set_progress"):
            self.loss.set_progress(step.progress)
        if self.loss.on == "logits":
            out = self.loss(step.logits, step.unlabelled_logits)
        else:
            out = self.loss(step.features, step.unlabelled_features)
        value, extra = out if isinstance(out, tuple) else (out, {})
        return self.weight * value, extra


#: Method name → loss factory (``feature_dim`` → loss module).
METHODS = {
    "mmd": lambda d: MMDLoss(),
    "coral": lambda d: CORALLoss(),
    "dann": lambda d: DANNLoss(d),
    "self_training": lambda d: SelfTrainingLoss(),
    "entropy": lambda d: EntropyLoss(),
}


def make_term(method: str, feature_dim: int, weight: float = 1.0) -> AdaptTerm:
    """The Trainer term for a method by name (train with ``fit(..., unlabelled=target.train)``).

    Raises:
        ValueError: unknown method (never a silent zero loss).
    """
    if method not in METHODS:
        raise ValueError(f"unknown adaptation method {method!r}; choose one of {', '.join(METHODS)}")
    return AdaptTerm(METHODS[method](feature_dim), weight)
