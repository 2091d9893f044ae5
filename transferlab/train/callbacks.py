"""The :class:`Callback` base: the hooks the Trainer calls, declared once.

A callback subclasses :class:`Callback` and overrides some of its hooks (the others do
nothing).  The Trainer refuses a callback that defines a method ``on_...`` that is not one of
:data:`HOOKS` (a misspelt ``on_epoch_ends`` would otherwise never run), and an object that is
not a :class:`Callback`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    from transferlab.train.terms import Step
    from transferlab.train.trainer import Trainer

#: The hooks, in the order a step meets them.
HOOKS = ("on_epoch_start", "on_step_start", "on_step_end", "on_epoch_end")


class Callback:
    """Base of every Trainer callback; each hook is a no-op until overridden.

    ``trainer.total_steps`` is the number of steps the current ``fit`` plans
    (:mod:`transferlab.train.schedules` uses it).
    """

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first step of epoch ``epoch`` (0-based)."""

    def on_step_start(self, trainer: Trainer, step: int) -> None:
        """Before the forward pass of global step ``step`` (0-based)."""

    def on_step_end(self, trainer: Trainer, step: Step, parts: dict[str, Tensor]) -> None:
        """After the optimiser step, with the :class:`~transferlab.train.terms.Step` and its
        detached loss parts (``ce``, each term's value, ``loss``)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, float]) -> None:
        """After epoch ``epoch``, with its history record (validation scores included)."""


def check_callbacks(callbacks: Sequence[object]) -> list[Callback]:
    """The callbacks as a list, each checked.

    Raises:
        TypeError: an object that is not a :class:`Callback`.
        ValueError: a callback with a method ``on_...`` that is not a hook (a misspelling).
    """
    out = []
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(
                f"callback {cb!r} is a {type(cb).__name__}: a callback must subclass "
                f"transferlab.train.Callback and override some of its hooks {list(HOOKS)}"
            )
        unknown = [n for n in dir(cb) if n.startswith("on_") and n not in HOOKS]
        if unknown:
            hints = [difflib.get_close_matches(n, HOOKS, n=1) for n in unknown]
            said = ", ".join(
                f"{n!r}" + (f" (did you mean {h[0]!r}?)" if h else "")
                for n, h in zip(unknown, hints)
            )
            raise ValueError(
                f"callback {type(cb).__name__} defines {said}, which the Trainer never calls; "
                f"its hooks are {', '.join(HOOKS)}"
            )
        out.append(cb)
    return out
