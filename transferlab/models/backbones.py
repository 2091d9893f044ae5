"""Pretrained torchvision backbones in the course's form f = g ∘ h (page
``book/pretrained.md``).

:func:`pretrained_backbone` loads an ImageNet network through torchvision's ``weights=`` enums
(never the deprecated ``pretrained=``), keeps everything up to the pooled feature vector as
``features`` (h) and puts a new linear ``head`` (g) for the target's classes on top, so that the
course's tools apply unchanged: :func:`~transferlab.finetune.linear_probe`,
:func:`~transferlab.finetune.discriminative_lr_groups`, :class:`~transferlab.finetune.L2SP`,
:func:`~transferlab.peft.lora.apply_lora`, and the adaptation loss terms of
:mod:`transferlab.adapt`.

Pretrained weights only help on inputs prepared as they were in pretraining: resized and
cropped to the weights' size, and normalised with ImageNet's channel statistics.
:meth:`Backbone.transforms` returns that preprocessing (``weights.transforms()``), and the first
batches a pretrained backbone sees are checked against it (:class:`InputCheck`).

Weights are read from ``$TORCH_HOME/hub/checkpoints`` and downloaded there when missing; with no
network that fails within seconds with a :class:`WeightsUnavailableError` that names the offline
alternatives.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

#: Architectures :func:`pretrained_backbone` knows how to split into ``features`` and ``head``.
ARCHS = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large")
_DOWNLOAD_TIMEOUT_S = 15


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither in the torch hub cache nor downloadable."""


def weights_enum(arch: str, weights=None):
    """The torchvision weights enum member for ``arch``: ``weights`` may be a member
    (``ResNet18_Weights.IMAGENET1K_V1``), its name (``"IMAGENET1K_V1"``, ``"DEFAULT"``) or
    ``None`` (then the default member: its metadata, e.g. the preprocessing, needs no download)."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    if weights is None:
        return enum.DEFAULT
    if isinstance(weights, str):
        try:
            return enum[weights]
        except KeyError:
            raise ValueError(
                f"{arch} has no weights {weights!r}; choose one of {list(enum.__members__)}"
            ) from None
    if not isinstance(weights, enum):
        raise TypeError(f"weights={weights!r} are not weights of {arch} ({enum.__name__})")
    return weights


def checkpoint_path(weights) -> Path:
    """Where torch looks for a weights file before downloading it:
    ``$TORCH_HOME/hub/checkpoints/<file name of weights.url>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def looks_unnormalised(x: Tensor, min_size: int) -> str | None:
    """Why the batch ``x`` ``(N, 3, H, W)`` does not look like ImageNet-preprocessed input, or
    ``None``.

    Flags images smaller than ``min_size`` (the weights' crop size, e.g. 224), a batch without
    any negative value (raw pixels in [0, 1] or [0, 255]: normalised images are centred on 0),
    and per-channel means or standard deviations far from the normalised range
    (a mean beyond ±3, or a std outside [0.05, 10]: wide bounds, as a batch of, say, sky pictures
    has a blue mean near 2 once normalised).
    """
    if x.dim() != 4:
        return None
    h, w = x.shape[-2:]
    if min(h, w) < min_size:
        return (
            f"the images are {h}×{w}, smaller than the {min_size}×{min_size} "
            "the weights were trained on"
        )
    x = x.detach().float()
    if bool(x.min() >= 0):
        return (
            f"no input value is negative (range [{x.min():.3g}, {x.max():.3g}]): these look like "
            "raw pixels, not images normalised with ImageNet's mean and std"
        )
    mean, std = x.mean((0, 2, 3)), x.std((0, 2, 3), correction=0)
    if bool((mean.abs() > 3).any() or (std < 0.05).any() or (std > 10).any()):
        return (
            f"the per-channel means {[round(v, 2) for v in mean.tolist()]} and stds "
            f"{[round(v, 2) for v in std.tolist()]} are far from those of normalised images "
            "(about 0 and 1)"
        )
    return None


class InputCheck(nn.Module):
    """The identity, which warns once if one of the first ``checks`` batches it sees does not
    look preprocessed as the pretrained weights expect (see :func:`looks_unnormalised`).

    It sits first in a pretrained backbone's ``features``, so that it sees what the Trainer
    feeds the model; only a few batches are checked, so it costs nothing after them (and no
    device synchronisation).  ``x``: ``(N, 3, H, W)`` → the same tensor.
    """

    def __init__(self, min_size: int, what: str, checks: int = 3):
        super().__init__()
        self.min_size, self.what, self.checks_left = min_size, what, checks

    def forward(self, x: Tensor) -> Tensor:
        if self.checks_left > 0 and not torch.compiler.is_compiling():
            self.checks_left -= 1
            problem = looks_unnormalised(x, self.min_size)
            if problem is not None:
                self.checks_left = 0
                warnings.warn(
                    f"{self.what} received inputs it was not trained on: {problem}. "
                    "Prepare images with backbone.transforms() (weights.transforms(): resize, "
                    "crop, ImageNet mean/std), or pass input_size= to pretrained_backbone when "
                    "you mean to train at a smaller size.",
                    UserWarning,
                    stacklevel=2,
                )
        return x

    def extra_repr(self) -> str:
        return f"min_size={self.min_size}, checks_left={self.checks_left}"


class Backbone(nn.Module):
    """A torchvision network as f = g ∘ h: ``features`` (h, pretrained) and a new ``head`` (g).

    Shapes: ``x`` ``(N, 3, H, W)`` (preprocessed by :meth:`transforms`) → ``features(x)``
    ``(N, feature_dim)`` → logits ``(N, num_classes)``.

    Attributes:
        features: an ``nn.Sequential`` whose submodules keep torchvision's names (``conv1``,
            ``bn1``, ``layer1`` … ``layer4`` of a ResNet; ``0`` … of a MobileNetV3's blocks),
            so LoRA targets read as in torchvision (``"features.layer4.1.conv2"``).
        head: ``nn.Linear(feature_dim, num_classes)``, freshly initialised.
        weights: the torchvision weights enum member loaded, or ``None`` (random initialisation).
        input_size: the side of the square images the model is meant to see.
    """

    def __init__(
        self,
        arch: str,
        features: nn.Sequential,
        feature_dim: int,
        num_classes: int,
        weights=None,
        input_size: int = 224,
    ):
        super().__init__()
        self.features = features
        self.head = nn.Linear(feature_dim, num_classes)
        self.weights = weights
        self.input_size = input_size
        self.config = {
            "arch": arch,
            "num_classes": num_classes,
            "weights": None if weights is None else str(weights),
            "input_size": input_size,
        }

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def transforms(self, train: bool = False):
        """The preprocessing of the weights, at :attr:`input_size`: a callable on a PIL image or a
        ``(3, H, W)`` / ``(N, 3, H, W)`` tensor (uint8, or float in [0, 1]).

        ``train=False``: ``weights.transforms()`` (resize to ``input_size · 256/224``, centre crop
        ``input_size``, ImageNet mean/std).  ``train=True``: a random resized crop and a
        horizontal flip before the same normalisation (the usual ImageNet augmentation).
        """
        from torchvision.transforms import v2

        meta = weights_enum(self.config["arch"], self.weights)
        base = meta.transforms()
        crop = self.input_size
        if not train:
            if crop == base.crop_size[0]:
                return base
            return meta.transforms(
                crop_size=crop, resize_size=round(crop * base.resize_size[0] / base.crop_size[0])
            )
        return v2.Compose(
            [
                v2.ToImage(),
                v2.RandomResizedCrop(crop, antialias=True),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(base.mean, base.std),
            ]
        )


def _split_torchvision(arch: str, net: nn.Module) -> tuple[nn.Sequential, int]:
    """``features`` (everything up to the pooled feature vector) and its size."""
    if arch.startswith("resnet"):
        names = [
            "conv1",
            "bn1",
            "relu",
            "maxpool",
            "layer1",
            "layer2",
            "layer3",
            "layer4",
            "avgpool",
        ]
        layers = OrderedDict((n, getattr(net, n)) for n in names)
        layers["flatten"] = nn.Flatten(1)
        return nn.Sequential(layers), net.fc.in_features
    # MobileNetV3: the conv blocks, the pool, and the pretrained 576→1024 (or 960→1280) layer of
    # its classifier: only the last Linear (→ 1000 ImageNet classes) is replaced.
    layers = OrderedDict((n, m) for n, m in net.features.named_children())
    layers["avgpool"] = net.avgpool
    layers["flatten"] = nn.Flatten(1)
    layers["pre_logits"] = net.classifier[:-1]
    return nn.Sequential(layers), net.classifier[-1].in_features


def pretrained_backbone(
    arch: str,
    num_classes: int,
    weights="DEFAULT",
    *,
    input_size: int | None = None,
    progress: bool = False,
) -> Backbone:
    """A torchvision ImageNet network with a new head for ``num_classes`` classes.

    Args:
        arch: one of :data:`ARCHS` (``"resnet18"``, ``"mobilenet_v3_small"``, ...).
        num_classes: outputs of the new head.
        weights: a torchvision weights enum member, its name (``"DEFAULT"``, ``"IMAGENET1K_V1"``),
            or ``None`` for a random initialisation (no file needed: the offline path).
        input_size: the image side the model will be trained at (default: the weights' crop,
            224); smaller sizes run faster and lose accuracy, and silence the size warning.
        progress: show torchvision's download progress bar.

    Returns:
        a :class:`Backbone` (``features``, ``head``, ``transforms()``), on the CPU.

    Raises:
        WeightsUnavailableError: the weights file is not in ``$TORCH_HOME/hub/checkpoints`` and
            downloading it failed (no network); the message names the offline alternatives.

    Example::

        model = pretrained_backbone("resnet18", num_classes=10)  # ResNet18_Weights.DEFAULT
        preprocess = model.transforms()                          # 256 → 224, ImageNet mean/std
    """
    from torchvision.models import get_model

    if arch not in ARCHS:
        raise ValueError(f"unknown backbone {arch!r}: choose one of {', '.join(ARCHS)}")
    enum = None if weights is None else weights_enum(arch, weights)
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)  # fail fast when offline
    try:
        net = get_model(arch, weights=enum, progress=progress)
    except OSError as exc:  # URLError, timeouts, refused connections
        path = checkpoint_path(enum)
        raise WeightsUnavailableError(
            f"cannot load the {enum} weights of {arch}: {path} does not exist and the download "
            f"from {enum.url} failed (is this machine offline?). Copy that file there from a "
            f"machine with internet, or, offline, use pretrained_backbone({arch!r}, "
            f"{num_classes}, weights=None) (random initialisation, same "
            f"architecture and preprocessing) or the course's digit source "
            f"transferlab.bench.sources.pretrained_source(). Cause: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        socket.setdefaulttimeout(old_timeout)
    features, dim = _split_torchvision(arch, net)
    meta = weights_enum(arch, enum)
    size = input_size or meta.transforms().crop_size[0]
    if enum is not None:
        checked = OrderedDict([("check", InputCheck(size, f"{arch} with {enum}"))])
        checked.update(features.named_children())
        features = nn.Sequential(checked)
    return Backbone(arch, features, dim, num_classes, weights=enum, input_size=size)
