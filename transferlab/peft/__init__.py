"""Parameter-efficient transfer (page ``book/distill.md``): train a few parameters, keep
the pretrained ones frozen.

- :class:`~transferlab.peft.adapter.Adapter` and :func:`~transferlab.peft.adapter.add_adapters`:
  bottleneck adapters inserted after a layer (Houlsby et al. 2019);
- :class:`~transferlab.peft.lora.LoRALinear`, :class:`~transferlab.peft.lora.LoRAConv2d` and
  :func:`~transferlab.peft.lora.apply_lora`: low-rank updates ``W0 + (α/r) BA`` of the layers
  named by ``target_modules``, with :func:`~transferlab.peft.lora.merge_lora` /
  :func:`~transferlab.peft.lora.merge_and_unload` (Hu et al. 2022), and
  :func:`~transferlab.peft.lora.loraplus_param_groups`: LoRA+, a larger learning rate for ``B``
  (Hayou et al. 2024);
- :func:`bitfit`: train the biases only (Ben Zaken et al. 2022);
- :func:`count_parameters` and :func:`trainable_report`: trainable / total parameters.

The names follow Hugging Face PEFT (``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules``,
``modules_to_save``, ``merge_and_unload``), which readers will meet next.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from torch import nn

from transferlab.peft.adapter import Adapter, WithAdapter, add_adapters
from transferlab.peft.lora import (
    LoRAConv2d,
    LoRALayer,
    LoRALinear,
    apply_lora,
    lora_layers,
    loraplus_param_groups,
    mark_only_trainable,
    merge_and_unload,
    merge_lora,
)

__all__ = [
    "Adapter",
    "LoRAConv2d",
    "LoRALayer",
    "LoRALinear",
    "ParameterCount",
    "WithAdapter",
    "add_adapters",
    "apply_lora",
    "bitfit",
    "count_parameters",
    "lora_layers",
    "loraplus_param_groups",
    "mark_only_trainable",
    "merge_and_unload",
    "merge_lora",
    "trainable_report",
]


class ParameterCount(NamedTuple):
    """``trainable`` and ``total`` numbers of parameters (scalars, not tensors), and their ratio."""

    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        """trainable / total (0 for a model without parameters)."""
        return self.trainable / self.total if self.total else 0.0


def count_parameters(model: nn.Module) -> ParameterCount:
    """Trainable (``requires_grad``) and total parameters of ``model``, each counted once even
    when shared between layers (tied weights)."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return ParameterCount(trainable, total)


def trainable_report(model: nn.Module) -> str:
    """``"trainable params: 7,306 || all params: 158,762 || trainable%: 4.60"`` (PEFT's
    ``print_trainable_parameters``, returned rather than printed)."""
    c = count_parameters(model)
    return (
        f"trainable params: {c.trainable:,} || all params: {c.total:,} || "
        f"trainable%: {100 * c.fraction:.2f}"
    )


def bitfit(model: nn.Module, modules_to_save: Iterable[str] = ()) -> nn.Module:
    """BitFit (Ben Zaken et al. 2022): train only the bias vectors (and every parameter of
    ``modules_to_save``, e.g. ``("head",)``); freeze the rest, in place.  Returns ``model``.

    Raises:
        ValueError: the model has no bias to train.
    """
    biases = [p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] == "bias"]
    if not biases:
        raise ValueError(
            "bitfit: the model has no parameter named '*.bias' (layers built with bias=False?)"
        )
    mark_only_trainable(model, biases, modules_to_save)
    return model
