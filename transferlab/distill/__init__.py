r"""Knowledge distillation (page ``book/distill.md``).

- :func:`kd_loss`: Hinton et al.'s (2015) soft-target loss with temperature and its T² factor;
- :class:`KDTerm`: that loss as a :class:`~transferlab.train.trainer.Trainer` loss term, with a
  frozen teacher and the mixing weight α with the hard-label loss, on the labelled batch and/or on
  an *unlabelled transfer set* that the teacher labels (``Trainer.fit(..., unlabelled=...)``);
- :class:`LogitTable`: a teacher whose logits were computed once, for a teacher too slow to run at
  every step of the student (a fine-tuned language model); ``hard=True`` gives its hard labels
  instead (the control that separates dark knowledge from having more labelled data);
- :func:`hint_loss` and :class:`HintTerm`: FitNets hints (Romero et al. 2015), a feature-level
  method: the student's features, through a learnt linear regressor, match the teacher's.

Example (a student distilled on 10 labels per class plus the unlabelled target images)::

    term = KDTerm(teacher, temperature=4.0, alpha=0.9, on="both")
    Trainer(student, loss_terms=[term]).fit(target.train.few_shot(10), unlabelled=target.train.x)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transferlab.models.protocol import FeaturesAndLogits
from transferlab.train.terms import LossTerm, Step

__all__ = ["HintTerm", "KDTerm", "LogitTable", "hint_loss", "kd_loss"]


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:  # also catches NaN
        raise ValueError(
            f"temperature must be > 0, got {temperature}: T divides the logits "
            "(T = 1: plain softmax; T > 1: softer targets)"
        )


def _full(x: Tensor) -> Tensor:
    """Half-precision logits (under autocast) in float32; float32 and float64 as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    r"""Distillation loss ``T² · KL(softmax(z_t / T) ‖ softmax(z_s / T))``, averaged over the batch.

    .. math::
        L_\text{KD} = \frac{T^2}{N}\sum_{i=1}^N \sum_{c=1}^C
        q_{t,ic}\,\log\frac{q_{t,ic}}{q_{s,ic}},
        \qquad q = \mathrm{softmax}(z / T).

    The gradient with respect to the student logits is ``T (q_s − q_t) / N``: without the T²
    factor it would shrink as 1/T (as 1/T² for large T), and the soft-target term would vanish
    next to the hard-label loss when the temperature is raised.

    Args:
        student_logits, teacher_logits: ``(N, C)`` (the teacher's are detached).
        temperature: T > 0.
    Returns:
        a scalar tensor.
    Raises:
        ValueError: shapes differ (e.g. the teacher has another number of classes), or T ≤ 0.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"logit shapes differ: student {tuple(student_logits.shape)} vs teacher "
            f"{tuple(teacher_logits.shape)}; both must be (N, C) with the same classes"
        )
    _check_temperature(temperature)
    t = temperature
    log_q_s = F.log_softmax(_full(student_logits) / t, dim=1)
    q_t = F.softmax(_full(teacher_logits.detach()) / t, dim=1)
    return F.kl_div(log_q_s, q_t, reduction="batchmean") * t * t


def _frozen(teacher: nn.Module) -> nn.Module:
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class KDTerm(LossTerm):
    r"""Hinton's distillation as a Trainer loss term, with a frozen teacher.

    The term weighs the Trainer's hard-label cross-entropy :math:`L_\text{CE}` of the labelled
    batch by ``supervised_weight`` :math:`= 1 - \alpha` and adds :math:`\alpha\,L_\text{KD}`,
    so that the objective is Hinton's weighted average

    .. math:: L = (1 - \alpha)\, L_\text{CE}(z_s, y) + \alpha\, T^2\, \mathrm{KL}(q_t \,\Vert\, q_s)

    (:func:`kd_loss`), with :math:`L_\text{KD}` taken over the images that ``on`` names:
    ``"labelled"`` (the labelled batch), ``"unlabelled"`` (the unlabelled batch of the step: a
    *transfer set* the teacher labels; pass ``fit(..., unlabelled=images)``) or ``"both"`` (their
    concatenation).  The teacher is put in eval mode and frozen (never optimised); its logits
    are computed without gradient at each step.

    Args:
        teacher: a model with the same classes as the student, ``(N, C, H, W) → (N, C)``.
        temperature: T > 0.
        alpha: α in [0, 1] (1: the soft targets alone; on unlabelled data they are all there is).
        on: ``"labelled"``, ``"unlabelled"`` or ``"both"``.

    Logged as ``kd`` (its value), with ``kd_soft`` (:math:`L_\text{KD}`) and ``kd_agree`` (how
    often student and teacher pick the same class).

    Raises:
        ValueError: T ≤ 0, α outside [0, 1], an unknown ``on``; at the first step, a teacher
            whose number of classes differs from the student's.
    """

    name = "kd"

    def __init__(
        self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9, on: str = "labelled"
    ):
        super().__init__()
        _check_temperature(temperature)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(
                f"alpha (the weight of the soft targets) must lie in [0, 1], got {alpha}"
            )
        if on not in ("labelled", "unlabelled", "both"):
            raise ValueError(f"on must be 'labelled', 'unlabelled' or 'both', got {on!r}")
        self.teacher = _frozen(teacher)
        self.temperature, self.alpha, self.on = float(temperature), float(alpha), on
        self.needs_unlabelled = on != "labelled"
        self.supervised_weight = 1.0 - self.alpha

    def train(self, mode: bool = True) -> KDTerm:
        super().train(mode)
        self.teacher.eval()  # the teacher stays in eval mode (dropout, batch norm) whatever happens
        return self

    def _inputs(self, step) -> tuple[Tensor, Tensor]:
        if self.on == "labelled":
            return step.batch.x, step.logits
        if step.batch.unlabelled is None:
            raise ValueError(
                f"KDTerm(on={self.on!r}) needs an unlabelled batch: "
                "pass fit(train, unlabelled=images)"
            )
        if self.on == "unlabelled":
            return step.batch.unlabelled, step.unlabelled_logits
        return torch.cat([step.batch.x, step.batch.unlabelled]), torch.cat(
            [step.logits, step.unlabelled_logits]
        )

    def forward(self, step: Step) -> tuple[Tensor, dict[str, Tensor]]:
        x, student = self._inputs(step)
        with torch.no_grad():
            teacher = self.teacher(x)
        if teacher.shape[1] != student.shape[1]:
            raise ValueError(
                f"the teacher predicts {teacher.shape[1]} classes "
                f"but the student {student.shape[1]}: "
                "distillation needs the same classes, in the same order"
            )
        soft = kd_loss(student, teacher, self.temperature)
        value = self.alpha * soft
        agree = (student.detach().argmax(1) == teacher.argmax(1)).float().mean()
        return value, {"soft": soft.detach(), "agree": agree}


class LogitTable(nn.Module):
    """A frozen teacher whose logits were computed once, on a fixed set of inputs: calling it on
    a batch of those inputs looks their logits up (for :class:`KDTerm`), so that a teacher as slow
    as a fine-tuned language model runs once per input instead of once per student step.

    Inputs are integer rows (token ids padded with 0), each found by its non-zero entries, so
    trailing padding does not change a row's identity.

    Args:
        inputs: ``(M, L)`` int64, the inputs the teacher saw.
        logits: ``(M, C)``, the teacher's logits on them.
        hard: return the teacher's hard labels instead, as logits ``HARD_LOGIT · one_hot`` (at
            any temperature ≤ 100 a one-hot distribution): the *hard-label control* of
            distillation (the student learns the teacher's decisions, not its dark knowledge).

    Raises:
        ValueError: shapes that do not match, non-integer inputs, two equal inputs with different
            logits (beyond rounding), or (when called) an input that is not in the table.
    """

    HARD_LOGIT = 1e4

    def __init__(self, inputs: Tensor, logits: Tensor, hard: bool = False):
        super().__init__()
        if inputs.dtype.is_floating_point or inputs.dim() != 2:
            raise ValueError(
                "LogitTable takes integer rows (M, L) such as token ids, "
                f"got {tuple(inputs.shape)} "
                f"{inputs.dtype}"
            )
        if logits.dim() != 2 or len(logits) != len(inputs):
            raise ValueError(
                f"logits must be (M, C) with M = {len(inputs)} rows, got {tuple(logits.shape)}"
            )
        out = logits.detach().float().cpu()
        self.index: dict[tuple[int, ...], int] = {}
        for i, key in enumerate(self._keys(inputs)):
            j = self.index.setdefault(key, i)
            if j != i and not torch.allclose(
                out[i], out[j], rtol=1e-2, atol=1e-2
            ):  # padding may round differently
                raise ValueError(
                    f"inputs {j} and {i} are equal but their logits differ: {out[j].tolist()} vs "
                    f"{out[i].tolist()}"
                )
        if hard:
            out = torch.nn.functional.one_hot(out.argmax(1), out.shape[1]).float() * self.HARD_LOGIT
        self.register_buffer("logits", out)
        self.hard = hard

    @staticmethod
    def _keys(x: Tensor) -> list[tuple[int, ...]]:
        return [tuple(v for v in row if v != 0) for row in x.cpu().tolist()]

    def forward(self, x: Tensor) -> Tensor:
        keys = self._keys(x)
        missing = [i for i, k in enumerate(keys) if k not in self.index]
        if missing:
            raise ValueError(
                f"{len(missing)} input(s) of the batch (rows {missing[:5]}) "
                "are not in this LogitTable: "
                "it answers only for the inputs its logits were computed on"
            )
        rows = torch.tensor([self.index[k] for k in keys], device=self.logits.device)
        return self.logits[rows].to(x.device)


def hint_loss(student_features: Tensor, teacher_features: Tensor, regressor: nn.Module) -> Tensor:
    r"""FitNets' hint loss: :math:`\frac{1}{N D_t}\lVert r(h_s) - h_t \rVert_F^2`, the mean squared
    error between the regressed student features and the (detached) teacher features.

    Args:
        student_features: ``(N, D_s)``; teacher_features: ``(N, D_t)``.
        regressor: maps ``(N, D_s)`` to ``(N, D_t)`` (e.g. ``nn.Linear(D_s, D_t)``).
    Returns:
        a scalar tensor.
    """
    guided = regressor(student_features)
    if guided.shape != teacher_features.shape:
        raise ValueError(
            f"the regressed student features have shape {tuple(guided.shape)}, the teacher's "
            f"{tuple(teacher_features.shape)}"
        )
    return F.mse_loss(guided.float(), teacher_features.detach().float())


class HintTerm(LossTerm):
    r"""FitNets hints (Romero et al. 2015) as a Trainer loss term: ``weight · hint_loss`` between
    the student's features :math:`h_s(x)` ``(N, D_s)`` and the frozen teacher's :math:`h_t(x)`
    ``(N, D_t)``, through a learnt regressor ``nn.Linear(D_s, D_t)`` (optimised with the student).

    Both models must have the form f = g ∘ h (``features`` and ``head``).  ``on`` as in
    :class:`KDTerm`.  Logged as ``hint``.
    """

    name = "hint"

    def __init__(
        self,
        teacher: nn.Module,
        student_dim: int,
        teacher_dim: int,
        weight: float = 1.0,
        on: str = "labelled",
    ):
        super().__init__()
        if on not in ("labelled", "unlabelled", "both"):
            raise ValueError(f"on must be 'labelled', 'unlabelled' or 'both', got {on!r}")
        self.teacher = FeaturesAndLogits(_frozen(teacher))
        self.regressor = nn.Linear(student_dim, teacher_dim)
        self.weight, self.on = float(weight), on
        self.needs_unlabelled = on != "labelled"

    def train(self, mode: bool = True) -> HintTerm:
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, step: Step) -> Tensor:
        if step.features is None:
            raise ValueError("HintTerm needs a student with `features` and `head` (f = g ∘ h)")
        if self.on == "labelled":
            x, feats = step.batch.x, step.features
        elif step.batch.unlabelled is None:
            raise ValueError(
                f"HintTerm(on={self.on!r}) needs an unlabelled batch: "
                "pass fit(train, unlabelled=images)"
            )
        elif self.on == "unlabelled":
            x, feats = step.batch.unlabelled, step.unlabelled_features
        else:
            x, feats = (
                torch.cat([step.batch.x, step.batch.unlabelled]),
                torch.cat([step.features, step.unlabelled_features]),
            )
        with torch.no_grad():
            teacher_feats, _ = self.teacher(x)
        if teacher_feats is None:
            raise ValueError("HintTerm needs a teacher with `features` and `head` (f = g ∘ h)")
        return self.weight * hint_loss(feats, teacher_feats, self.regressor)
