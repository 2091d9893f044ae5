"""Models of the form f = g ∘ h (``features`` and ``head``), and new heads for a target.

The source models the chapters transfer from are trained by a recipe:
:func:`transferlab.bench.sources.pretrained_source`.
"""

from transferlab.models.cnn import SmallCNN, new_head
from transferlab.models.protocol import FeaturesAndLogits, head_names, require_split, split, unwrap
from transferlab.models.transformer import RowEncoder, RowTransformer

__all__ = ["FeaturesAndLogits", "RowEncoder", "RowTransformer", "SmallCNN", "head_names", "new_head", "require_split",
           "split", "unwrap"]
