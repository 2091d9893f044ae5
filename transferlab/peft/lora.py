r"""LoRA: low-rank adaptation of a frozen weight (Hu et al. 2022), page ``book/distill.md``.

A frozen pretrained weight :math:`W_0 \in \mathbb{R}^{d_\text{out} \times d_\text{in}}` gets a
trainable update of rank ``r``:

.. math::
    h = W_0 x + b + \frac{\alpha}{r}\, B A x,\qquad
    A \in \mathbb{R}^{r \times d_\text{in}},\ B \in \mathbb{R}^{d_\text{out} \times r},\
    r \le \min(d_\text{in}, d_\text{out}).

``A`` starts random (Kaiming-uniform) and ``B`` at zero, so the wrapped layer starts as the
pretrained one exactly; only ``r (d_in + d_out)`` parameters train instead of ``d_in d_out``.
:meth:`LoRALayer.merge` folds the update into the weight, :math:`W = W_0 + \frac{\alpha}{r} BA`,
so that inference costs nothing extra.  The vocabulary follows Hugging Face PEFT (``r``,
``lora_alpha``, ``lora_dropout``, ``target_modules``, ``modules_to_save``, ``merge``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_rank(r: int, d_in: int, d_out: int, what: str) -> None:
    if not isinstance(r, int) or r < 1:
        raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}")
    if r > min(d_in, d_out):
        raise ValueError(
            f"LoRA rank r={r} is larger than the smaller dimension of {what} "
            f"(d_in={d_in}, d_out={d_out}): a rank above min(d_in, d_out) = {min(d_in, d_out)} "
            "adds parameters without adding expressiveness; choose r <= that"
        )


class LoRALayer(nn.Module):
    """What :class:`LoRALinear` and :class:`LoRAConv2d` share: the frozen ``base`` layer, the
    rank ``r``, ``lora_alpha``, the ``scaling`` α/r, and the merge state ``merged``."""

    base: nn.Module

    def __init__(self, base: nn.Module, r: int, lora_alpha: float | None, lora_dropout: float):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.r = r
        self.lora_alpha = float(r if lora_alpha is None else lora_alpha)
        self.scaling = self.lora_alpha / r
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> Tensor:
        """The update :math:`\\frac{\\alpha}{r} BA`, shaped as the base layer's weight."""
        raise NotImplementedError

    @property
    def weight(self) -> Tensor:
        """The effective weight :math:`W_0 + \\frac{\\alpha}{r} BA` (differentiable; ``W_0`` once
        merged), for code that reads ``.weight`` instead of calling the layer:
        ``nn.MultiheadAttention`` reads its ``out_proj.weight``, and the inference fast path of
        ``nn.TransformerEncoderLayer`` its ``linear1.weight`` and ``linear2.weight``."""
        return self.base.weight if self.merged else self.base.weight + self.delta_weight()

    @property
    def bias(self) -> Tensor | None:
        """The base layer's (frozen) bias."""
        return self.base.bias

    def merge(self) -> None:
        """Fold the update into the base weight (:math:`W \\leftarrow W_0 + \\frac{\\alpha}{r} BA`);
        the forward pass then skips the low-rank branch.

        Raises:
            RuntimeError: already merged (a second merge would add the update twice).
        """
        if self.merged:
            raise RuntimeError(
                f"this {type(self).__name__} is already merged: merging twice would add "
                "the low-rank update twice; call unmerge() first"
            )
        with torch.no_grad():
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        self.merged = True

    def unmerge(self) -> None:
        """Undo :meth:`merge` (subtract the update again).

        Raises:
            RuntimeError: not merged.
        """
        if not self.merged:
            raise RuntimeError(f"this {type(self).__name__} is not merged")
        with torch.no_grad():
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, lora_alpha={self.lora_alpha:g}, merged={self.merged}"


class LoRALinear(LoRALayer):
    r"""An ``nn.Linear`` with a LoRA update:
    :math:`y = W_0 x + b + \frac{\alpha}{r} B A\, \mathrm{drop}(x)`.

    Args:
        base: the pretrained layer (its weight and bias are frozen).
        r: rank, ``1 <= r <= min(in_features, out_features)``.
        lora_alpha: α (default: ``r``, so the scaling α/r is 1).
        lora_dropout: dropout on the input of the low-rank branch.

    Shapes: ``x`` ``(*, in_features)`` → ``(*, out_features)``; ``lora_A`` ``(r, in_features)``,
    ``lora_B`` ``(out_features, r)`` (zeros at first, so the layer starts as ``base``).

    Raises:
        ValueError: ``r`` not in ``[1, min(in_features, out_features)]``.
    """

    def __init__(
        self,
        base: nn.Linear,
        r: int = 4,
        lora_alpha: float | None = None,
        lora_dropout: float = 0.0,
    ):
        _check_rank(
            r,
            base.in_features,
            base.out_features,
            f"nn.Linear({base.in_features}, {base.out_features})",
        )
        super().__init__(base, r, lora_alpha, lora_dropout)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype)
        )
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises its weight

    def delta_weight(self) -> Tensor:
        """``(out_features, in_features)``: :math:`\\frac{\\alpha}{r} BA`."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if self.merged:
            return y
        return y + self.scaling * F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)


class LoRAConv2d(LoRALayer):
    r"""An ``nn.Conv2d`` (``groups=1``) with a LoRA update: ``A`` is a convolution with the base
    layer's kernel, stride and padding from ``C_in`` to ``r`` channels, ``B`` a 1×1 convolution
    from ``r`` to ``C_out``; seen as matrices over ``(C_out, C_in·k_h·k_w)`` this is
    :math:`W_0 + \frac{\alpha}{r} BA` again, and merges the same way.

    Shapes: ``x`` ``(N, C_in, H, W)`` → ``(N, C_out, H', W')``; ``lora_A`` ``(r, C_in, k_h, k_w)``,
    ``lora_B`` ``(C_out, r, 1, 1)`` (zeros).

    Raises:
        ValueError: grouped convolution, or ``r`` not in ``[1, min(C_in·k_h·k_w, C_out)]``.
    """

    def __init__(
        self,
        base: nn.Conv2d,
        r: int = 4,
        lora_alpha: float | None = None,
        lora_dropout: float = 0.0,
    ):
        if base.groups != 1:
            raise ValueError(
                f"LoRAConv2d supports groups=1 convolutions only, got groups={base.groups}"
            )
        kh, kw = base.kernel_size
        _check_rank(
            r,
            base.in_channels * kh * kw,
            base.out_channels,
            f"nn.Conv2d({base.in_channels}, {base.out_channels}, kernel_size={base.kernel_size})",
        )
        super().__init__(base, r, lora_alpha, lora_dropout)
        w = base.weight
        self.lora_A = nn.Parameter(
            torch.empty(r, base.in_channels, kh, kw, device=w.device, dtype=w.dtype)
        )
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_channels, r, 1, 1, device=w.device, dtype=w.dtype)
        )
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def delta_weight(self) -> Tensor:
        """``(C_out, C_in, k_h, k_w)``: :math:`\\frac{\\alpha}{r} BA` reshaped as the kernel."""
        b = self.lora_B.flatten(1)  # (C_out, r)
        a = self.lora_A.flatten(1)  # (r, C_in·k_h·k_w)
        return self.scaling * (b @ a).view_as(self.base.weight)

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if self.merged:
            return y
        c = self.base
        z = F.conv2d(self.lora_dropout(x), self.lora_A, None, c.stride, c.padding, c.dilation)
        return y + self.scaling * F.conv2d(z, self.lora_B)


def _candidates(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and n]


def _matches(name: str, target_modules: str | Iterable[str]) -> bool:
    """PEFT's rule: a string is a regular expression the full name must match; a list holds
    names, each matching a module whose name equals it or ends with ``"." + it``."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def mark_only_trainable(
    model: nn.Module, keep: Iterable[nn.Parameter], modules_to_save: Iterable[str] = ()
) -> None:
    """Freeze every parameter of ``model`` except ``keep`` and those of the submodules named in
    ``modules_to_save`` (e.g. ``("head",)``: the classifier, trained in full as PEFT does).

    Raises:
        ValueError: a name in ``modules_to_save`` that is not a submodule of ``model``.
    """
    names = dict(model.named_modules())
    keep_ids = {id(p) for p in keep}
    for name in modules_to_save:
        if name not in names:
            raise ValueError(
                f"modules_to_save: no submodule named {name!r}; "
                f"the model has {[n for n in names if n]}"
            )
        keep_ids |= {id(p) for p in names[name].parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep_ids)


def apply_lora(
    model: nn.Module,
    target_modules: str | Iterable[str],
    r: int = 4,
    lora_alpha: float | None = None,
    lora_dropout: float = 0.0,
    modules_to_save: Iterable[str] = (),
) -> nn.Module:
    """Replace, in place, each ``nn.Linear`` / ``nn.Conv2d`` whose name matches
    ``target_modules`` by its :class:`LoRALinear` / :class:`LoRAConv2d`, and freeze every other
    parameter except those of ``modules_to_save``.  Returns ``model``.

    Args:
        target_modules: layer names, e.g. ``["features.6"]`` or ``["out_proj", "linear1"]`` (a name
            matches itself and any name ending with ``"." + name``), or one regular expression
            that must match the full name (``r"layers\\.\\d+\\.linear\\d"``), as in PEFT.
        r, lora_alpha, lora_dropout: see :class:`LoRALinear`.
        modules_to_save: submodules trained in full (e.g. ``("head",)``).

    Raises:
        ValueError: no layer matches (the message lists the names of the model's ``nn.Linear``
            and ``nn.Conv2d`` layers), or a bad rank for a matched layer.
    """
    chosen = [n for n in _candidates(model) if _matches(n, target_modules)]
    if not chosen:
        raise ValueError(
            f"target_modules={target_modules!r} matches no nn.Linear or nn.Conv2d layer; "
            f"the model's layers are {_candidates(model)}"
        )
    new: list[nn.Parameter] = []
    for name in chosen:
        layer = model.get_submodule(name)
        cls = LoRALinear if isinstance(layer, nn.Linear) else LoRAConv2d
        wrapped = cls(layer, r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout)
        _set_submodule(model, name, wrapped)
        new += [wrapped.lora_A, wrapped.lora_B]
    mark_only_trainable(model, new, modules_to_save)
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALayer]:
    """``{name: layer}`` of the LoRA layers inside ``model``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (LoRALinear, LoRAConv2d))}


def merge_lora(model: nn.Module) -> nn.Module:
    """:meth:`~LoRALayer.merge` every LoRA layer of ``model`` (in place); returns ``model``.

    Raises:
        RuntimeError: a layer is already merged.
    """
    for layer in lora_layers(model).values():
        layer.merge()
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer and put the plain base layers back (in place; PEFT's name):
    the result has exactly the architecture and cost of the original model."""
    for name, layer in lora_layers(model).items():
        if not layer.merged:
            layer.merge()
        _set_submodule(model, name, layer.base)
    return model


def loraplus_param_groups(
    model: nn.Module, lr: float, loraplus_lr_ratio: float = 16.0
) -> list[dict]:
    r"""Optimiser parameter groups for LoRA+ (Hayou, Ghosh & Yu 2024): every ``lora_B`` trains
    with a learning rate ``loraplus_lr_ratio`` times larger than the rest,

    .. math::  \eta_B = \lambda\, \eta_A, \qquad \lambda = 16 \text{ by default,}

    and every other trainable parameter (``lora_A``, ``modules_to_save``) with ``lr``.
    Why: ``B`` starts at zero, so at first the update :math:`\frac{\alpha}{r} BA` moves only as
    fast as ``B`` does; with one rate for both, the rate that keeps ``A`` stable leaves ``B`` too
    slow (the paper shows the two need different scales as the width grows).  Pass the result to
    any ``torch.optim`` optimiser or as ``Trainer(params=...)`` (PEFT's
    ``create_loraplus_optimizer`` builds the same groups).

    Args:
        model: a model with LoRA layers (:func:`apply_lora`); frozen parameters are left out.
        lr: ``η_A``; loraplus_lr_ratio: ``λ`` (1 gives plain LoRA).

    Returns:
        ``[{"params": [...], "lr": lr}, {"params": [lora_B, ...], "lr": λ·lr}]``.

    Raises:
        ValueError: the model has no trainable ``lora_B``, or ``λ <= 0``.
    """
    if loraplus_lr_ratio <= 0:
        raise ValueError(f"loraplus_lr_ratio must be positive, got {loraplus_lr_ratio}")
    b_ids = {
        id(layer.lora_B) for layer in lora_layers(model).values() if layer.lora_B.requires_grad
    }
    if not b_ids:
        raise ValueError(
            "loraplus_param_groups: the model has no trainable LoRA layer; call apply_lora first"
        )
    trainable = [p for p in model.parameters() if p.requires_grad]
    rest = [p for p in trainable if id(p) not in b_ids]
    b = [p for p in trainable if id(p) in b_ids]
    return [{"params": rest, "lr": float(lr)}, {"params": b, "lr": float(lr) * loraplus_lr_ratio}]
