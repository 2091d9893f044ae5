r"""Bottleneck adapters (Houlsby et al. 2019), page ``book/distill.md``.

An adapter is a small residual bottleneck inserted after a frozen layer:

.. math::
    a(h) = h + W_\text{up}\,\sigma(W_\text{down} h + b_\text{down}) + b_\text{up},\qquad
    W_\text{down} \in \mathbb{R}^{m \times d},\ W_\text{up} \in \mathbb{R}^{d \times m},\ m \ll d,

with ``2md + m + d`` parameters.  ``W_up`` and ``b_up`` start at zero, so the adapted network
starts as the pretrained one exactly.  Its extra cost at inference is two thin matrix products
per adapter, ``O(2md)`` per position next to the ``O(d_in d)`` of the layer it follows: adapters
are *light*, not "computationally heavy".
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from transferlab.peft.lora import _set_submodule, mark_only_trainable


class Adapter(nn.Module):
    """The bottleneck ``h + up(σ(down(h)))`` over the feature dimension ``dim``.

    Args:
        dim: d, the size of the features it adapts.
        bottleneck: m, the width of the bottleneck.
        activation: σ (default ReLU).

    Shapes: ``(N, d)`` or ``(N, L, d)`` (features last), or ``(N, d, H, W)`` (a convolution's
    output: the channels are adapted at each position) → the same shape.
    """

    def __init__(self, dim: int, bottleneck: int = 8, activation: nn.Module | None = None):
        super().__init__()
        if bottleneck < 1 or dim < 1:
            raise ValueError(
                f"dim and bottleneck must be positive, got dim={dim}, bottleneck={bottleneck}"
            )
        self.down = nn.Linear(dim, bottleneck)
        self.act = activation if activation is not None else nn.ReLU()
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)  # start as the identity: the pretrained network is unchanged
        nn.init.zeros_(self.up.bias)
        self.dim = dim

    def forward(self, h: Tensor) -> Tensor:
        if h.ndim == 4:  # (N, C, H, W): adapt the channels at every position
            return h + self.up(self.act(self.down(h.movedim(1, -1)))).movedim(-1, 1)
        if h.shape[-1] != self.dim:
            raise ValueError(
                f"Adapter(dim={self.dim}) got features of shape {tuple(h.shape)}: "
                f"the last dimension must be {self.dim}"
            )
        return h + self.up(self.act(self.down(h)))


class WithAdapter(nn.Module):
    """``adapter(layer(x))``: a layer followed by its adapter (the layer keeps its name under
    ``.layer``, the adapter lives under ``.adapter``)."""

    def __init__(self, layer: nn.Module, adapter: Adapter):
        super().__init__()
        self.layer, self.adapter = layer, adapter

    def forward(self, x: Tensor) -> Tensor:
        return self.adapter(self.layer(x))


def _out_dim(layer: nn.Module, name: str) -> int:
    for attr in ("out_features", "out_channels", "embed_dim", "d_model"):
        if isinstance(getattr(layer, attr, None), int):
            return getattr(layer, attr)
    raise ValueError(f"cannot tell the output size of {name!r} ({type(layer).__name__}); pass dim=")


def add_adapters(
    model: nn.Module,
    after: Iterable[str],
    bottleneck: int = 8,
    dim: int | None = None,
    modules_to_save: Iterable[str] = (),
) -> nn.Module:
    """Insert an :class:`Adapter` after each named submodule (in place), and freeze every other
    parameter except those of ``modules_to_save``.  Returns ``model``.

    Args:
        after: full submodule names, e.g. ``["features.7"]`` (after the ReLU that ends h of a
            :class:`~transferlab.models.cnn.SmallCNN`); the size adapted is the output size of that
            module (``out_features``/``out_channels``), or of the last such layer before it in
            its parent, or ``dim``.
        bottleneck: m.
        modules_to_save: submodules trained in full (e.g. ``("head",)``).

    Raises:
        ValueError: a name that is not a submodule (the message lists them), or an unknown size.
    """
    names = dict(model.named_modules())
    new = []
    for name in after:
        if name not in names or not name:
            raise ValueError(
                f"add_adapters: no submodule named {name!r}; "
                f"the model has {[n for n in names if n]}"
            )
        d = dim
        if d is None:
            parent_name, _, child = name.rpartition(".")
            parent = names[parent_name] if parent_name else model
            siblings = list(parent.named_children())
            upto = [m for n, m in siblings[: [n for n, _ in siblings].index(child) + 1]]
            sized = [
                m
                for m in upto
                if any(
                    isinstance(getattr(m, a, None), int) for a in ("out_features", "out_channels")
                )
            ]
            d = _out_dim(sized[-1] if sized else names[name], name)
        adapter = Adapter(d, bottleneck).to(next(model.parameters()).device)
        _set_submodule(model, name, WithAdapter(names[name], adapter))
        new += list(adapter.parameters())
    mark_only_trainable(model, new, modules_to_save)
    return model
