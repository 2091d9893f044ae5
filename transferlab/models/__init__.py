"""Models (f = g ∘ h with ``features`` and ``head``), target models from a source, cached sources."""

from transferlab.models.cnn import SmallCNN, from_source, new_head
from transferlab.models.zoo import pretrained_source

__all__ = ["SmallCNN", "from_source", "new_head", "pretrained_source"]
