"""Models of the form f = g ∘ h (``features`` and ``head``), and new heads for a target.

The source models the chapters transfer from are trained by a recipe:
:func:`transferlab.bench.sources.pretrained_source`; ImageNet networks come from torchvision
through :func:`transferlab.models.backbones.pretrained_backbone`.
"""

from transferlab.models.backbones import Backbone, WeightsUnavailableError, pretrained_backbone
from transferlab.models.cnn import SmallCNN, new_head
from transferlab.models.protocol import FeaturesAndLogits, head_names, require_split, split, unwrap
from transferlab.models.transformer import RowEncoder, RowTransformer

__all__ = [
    "Backbone",
    "FeaturesAndLogits",
    "RowEncoder",
    "RowTransformer",
    "SmallCNN",
    "WeightsUnavailableError",
    "head_names",
    "new_head",
    "pretrained_backbone",
    "require_split",
    "split",
    "unwrap",
]
