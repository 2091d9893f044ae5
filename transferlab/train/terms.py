"""What plugs into the Trainer's objective: the :class:`Step` a loss term sees, and the
:class:`LossTerm` base every term of the package derives from.

At every step the Trainer computes

    loss = w · Σ_t L_t + Σ_term term(step)

with ``L_t`` the supervised loss of each task
(:class:`~transferlab.train.supervised.SupervisedLoss`) and ``w`` the product of the terms'
``supervised_weight`` (1 unless a term says otherwise: distillation weighs the hard labels by
``1 - α``); a term with ``replaces_supervised = True`` (task weighting, an alternating schedule)
returns the whole supervised loss itself, from ``step.task_losses``, and the Trainer adds none.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from transferlab.models.protocol import Logits
from transferlab.train.batch import Batch

#: What a loss term returns, a scalar or a scalar and extra metrics to log under its name.
TermOutput = Tensor | tuple[Tensor, dict[str, Tensor]]


@dataclass(kw_only=True)
class Step:
    """What a loss term sees at one training step (built by name, never by position).

    Attributes:
        model: the model being trained (unwrapped: its own ``features``, ``head``, parameters).
        batch: the :class:`~transferlab.train.batch.Batch` (``x``, ``y``, ``groups``,
            ``unlabelled``).
        features: ``h(x)`` ``(B, D)``, or ``None`` for a model without ``features``/``head``.
        logits: ``g(h(x))`` ``(B, C)`` (``{task: (B, C_task)}`` for a ``ModuleDict`` head).
        unlabelled_features, unlabelled_logits: the same for ``batch.unlabelled`` (or ``None``).
        epoch: 0-based epoch; step: 0-based global step; progress: fraction of the planned
            steps done, in [0, 1] (for schedules such as DANN's λ).
        device: where the batch lives; generator: a seeded CPU generator for any sampling.
        task_losses: ``{task: scalar}``, the supervised loss of each head (``{"y": ce}`` for a
            single head), with their graph, for task weighting.
    """

    model: nn.Module
    batch: Batch
    features: Tensor | None
    logits: Logits
    unlabelled_features: Tensor | None = None
    unlabelled_logits: Logits | None = None
    epoch: int = 0
    step: int = 0
    progress: float = 0.0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    generator: torch.Generator = field(default_factory=torch.Generator)
    task_losses: dict[str, Tensor] = field(default_factory=dict)

    @property
    def x(self) -> Tensor:
        return self.batch.x

    @property
    def y(self) -> Tensor:
        return self.batch.y


class LossTerm(nn.Module):
    """Base of every loss term: ``term(step) -> scalar`` or ``(scalar, {metric: value})``.

    A subclass implements ``forward(step)`` and declares, as class or instance attributes:

    - ``name``: the key of its value in the history (and the prefix of its extra metrics;
      default: the class name);
    - ``needs_unlabelled``: ``fit`` must be given ``unlabelled=`` data (adaptation, KD on a
      transfer set);
    - ``replaces_supervised``: it returns the whole supervised loss (task weighting); at most
      one term of a Trainer may;
    - ``supervised_weight``: the factor of the supervised loss (Hinton's ``1 - α``).

    Its parameters (a DANN discriminator's) are optimised with the model's, and its state is
    saved in the Trainer's checkpoints under its name.  :meth:`set_progress` is called before
    every step with the fraction of the planned steps done.
    """

    name: str = "term"
    needs_unlabelled: bool = False
    replaces_supervised: bool = False
    supervised_weight: float = 1.0

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # a subclass that names nothing is named after itself
            cls.name = cls.__name__

    def set_progress(self, p: float) -> None:
        """Called by the Trainer before each step with ``p`` in [0, 1]; a no-op by default."""

    def forward(self, step: Step) -> TermOutput:  # pragma: no cover - every term overrides it
        raise NotImplementedError(f"{type(self).__name__} must implement forward(step)")


class FunctionTerm(LossTerm):
    """A plain function ``step -> scalar`` (or ``(scalar, metrics)``) as a loss term, e.g. a
    lab's ``lambda step: l2sp(step.model, reference, 1e-3)``; named after the function."""

    def __init__(
        self,
        fn: Callable[[Step], Tensor | tuple[Tensor, dict[str, Tensor]]],
        name: str | None = None,
    ):
        super().__init__()
        self.fn = fn
        fn_name = getattr(fn, "__name__", "")
        self.name = name or (fn_name if fn_name.isidentifier() else "term")

    def forward(self, step: Step) -> TermOutput:
        return self.fn(step)


_FUNCTIONS = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial)


#: the names of the Trainer's own entries in the history, which no loss term may take
RESERVED = frozenset({"loss", "ce", "acc", "epoch", "images_per_s"})


def as_term(term: object) -> LossTerm:
    """``term`` itself for a :class:`LossTerm`, a :class:`FunctionTerm` for a plain function.

    Raises:
        TypeError: any other object (an object with a ``__call__`` may carry settings such as
            ``replaces_supervised`` that only the base class makes the Trainer read), or a
            subclass whose ``__init__`` did not call ``super().__init__()``.
        ValueError: a name the Trainer's history already uses (``loss``, ``ce``, ``acc``...).
    """
    if isinstance(term, LossTerm):
        if "_modules" not in term.__dict__:
            raise TypeError(
                f"loss term {type(term).__name__} was not initialised as a LossTerm: call "
                "super().__init__() first in its __init__"
            )
    elif isinstance(term, _FUNCTIONS):
        term = FunctionTerm(term)
    else:
        raise TypeError(
            f"loss term {term!r} is a {type(term).__name__}: a loss term must subclass "
            "transferlab.train.LossTerm (declaring name, needs_unlabelled, replaces_supervised) "
            "or be a plain function step -> loss"
        )
    name = str(term.name)
    if name in RESERVED or name.startswith(("ce_", "mse_", "val_")):
        raise ValueError(
            f"loss term name {name!r} is taken by the Trainer's history (it logs "
            f"{sorted(RESERVED)}, ce_<task>, mse_<task> and val_...): give the term another name"
        )
    return term
