"""Small CNNs with the book's split f = g ∘ h: ``features`` (h) and ``head`` (g).

Transfer reuses ``features`` and replaces ``head`` (page ``book/finetune.md``).
"""

from __future__ import annotations

import copy

from torch import Tensor, nn

from transferlab.models.protocol import require_split, unwrap


class SmallCNN(nn.Module):
    """conv(32) → conv(64) → max-pool → fc(hidden) → head.

    Args:
        num_classes: outputs of the head.
        in_channels: image channels (1 for the digit domains).
        width: channels of the first conv (the second has twice as many).
        hidden: size of the feature vector that ``features`` returns.
        pool: spatial size after adaptive pooling, so any image size of at least 2×2 works.

    Shapes:
        ``x``: ``(N, in_channels, H, W)`` → ``features(x)``: ``(N, hidden)`` → logits
        ``(N, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        width: int = 32,
        hidden: int = 128,
        pool: int = 4,
    ):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(pool),
            nn.Flatten(),
            nn.Linear(2 * width * pool * pool, hidden),
            nn.ReLU(),
        )
        self.head = nn.Linear(hidden, num_classes)
        self.config = {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "width": width,
            "hidden": hidden,
            "pool": pool,
        }

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def new_head(model: nn.Module, num_classes: int) -> nn.Module:
    """A copy of ``model`` whose ``features`` are kept and whose ``head`` is freshly initialised
    for ``num_classes`` outputs (the source model is left untouched)."""
    _, head = require_split(model, "new_head")
    if not isinstance(head, nn.Linear):
        raise TypeError(
            f"new_head replaces a single nn.Linear head; this model's head is {type(head).__name__}"
        )
    target = copy.deepcopy(unwrap(model))
    target.head = nn.Linear(head.in_features, num_classes).to(next(model.parameters()).device)
    if hasattr(target, "config"):
        target.config = dict(target.config, num_classes=num_classes)
    return target
