"""The model contract of the course: f = g ∘ h, a feature extractor ``features`` (h) and a
``head`` (g), or a ``ModuleDict`` of heads for multi-task learning.

Everything that needs the features (loss terms, transferability scores, new heads) goes through
this module instead of looking for attributes itself, so a model wrapped by
``DistributedDataParallel`` or ``torch.compile`` fits as well as a plain one.
"""

from __future__ import annotations

from torch import Tensor, nn

Logits = Tensor | dict[str, Tensor]


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside ``DistributedDataParallel``/``DataParallel`` (``.module``),
    ``torch.compile`` (``._orig_mod``) and :class:`FeaturesAndLogits` (``.model``) wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        elif isinstance(model, FeaturesAndLogits):
            model = model.model
        else:
            return model


def split(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """``(features, head)`` of a model of the form f = g ∘ h, else ``None``."""
    m = unwrap(model)
    h, g = getattr(m, "features", None), getattr(m, "head", None)
    return (h, g) if isinstance(h, nn.Module) and isinstance(g, nn.Module) else None


def require_split(model: nn.Module, what: str) -> tuple[nn.Module, nn.Module]:
    """:func:`split`, or a ``TypeError`` that says what ``what`` needs."""
    parts = split(model)
    if parts is None:
        raise TypeError(
            f"{what} needs a model of the form f = g ∘ h, with `features` and `head` submodules "
            f"(as transferlab.models.SmallCNN); got {type(unwrap(model)).__name__}"
        )
    return parts


def head_names(model: nn.Module) -> list[str] | None:
    """The task names of a multi-head model (a ``ModuleDict`` head), else ``None``."""
    parts = split(model)
    return (
        list(parts[1].keys()) if parts is not None and isinstance(parts[1], nn.ModuleDict) else None
    )


class FeaturesAndLogits(nn.Module):
    """Features and logits in one forward pass: ``x (N, ...) → (features (N, D), logits)``.

    ``logits`` is ``(N, C)``, or ``{task: (N, C_task)}`` for a ``ModuleDict`` head; ``features`` is
    ``None`` for a model without ``features``/``head`` (then ``logits = model(x)``).  The Trainer
    wraps *this* module in ``DistributedDataParallel`` or ``torch.compile``, so that one call
    computes both and gradient synchronisation sees the whole graph.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor | None, Logits]:
        parts = split(self.model)
        if parts is None:
            return None, self.model(x)
        features, head = parts
        f = features(x)
        if isinstance(head, nn.ModuleDict):
            return f, {task: g(f) for task, g in head.items()}
        return f, head(f)
