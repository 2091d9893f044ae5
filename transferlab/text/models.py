"""Small text models of the package's own (page ``book/text.md``):
the from-scratch baseline and the distillation student.

:class:`SmallTextTransformer` reads the same WordPiece ids as the pretrained encoder: an
embedding of each token plus a learnt position embedding, ``layers`` PyTorch
``nn.TransformerEncoderLayer`` s (none: a bag of embeddings, as the deep averaging network of
Iyyer et al. 2015), and the masked mean over tokens; a linear head on top (f = g ∘ h).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from transferlab.text.encoder import attention_mask, masked_mean, trim

VOCAB_SIZE = 30_522  #: all-MiniLM-L6-v2's WordPiece vocabulary


class TextEncoder(nn.Module):
    """h: token ids ``(N, L)`` → ``(N, dim)``.

    Args:
        vocab_size: number of token ids.
        dim: width of the embeddings and layers.
        layers: transformer layers (0: the mean of the embeddings).
        heads: attention heads per layer.
        max_length: the longest input, in tokens (size of the position embedding).
        embedding: an initial embedding matrix ``(vocab_size, dim)`` (e.g. :func:`pca_embeddings`
            of a pretrained model's), else a random one.
    """

    def __init__(
        self,
        vocab_size: int = VOCAB_SIZE,
        dim: int = 64,
        layers: int = 1,
        heads: int = 4,
        max_length: int = 128,
        embedding: Tensor | None = None,
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        if embedding is not None:
            if tuple(embedding.shape) != (vocab_size, dim):
                raise ValueError(
                    f"embedding must have shape {(vocab_size, dim)}, got {tuple(embedding.shape)}"
                )
            with torch.no_grad():
                self.embed.weight.copy_(embedding)
        self.position = nn.Parameter(torch.zeros(max_length, dim))
        nn.init.normal_(self.position, std=0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.1, batch_first=True)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.dim, self.max_length = dim, max_length

    def forward(self, ids: Tensor) -> Tensor:
        ids = trim(ids)
        if ids.shape[1] > self.max_length:
            raise ValueError(
                f"inputs of {ids.shape[1]} tokens exceed this model's max_length={self.max_length}"
            )
        mask = attention_mask(ids)
        x = self.embed(ids) + self.position[: ids.shape[1]]
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=~mask)
        return self.norm(masked_mean(x, mask))


class SmallTextTransformer(nn.Module):
    """``features`` (a :class:`TextEncoder`) and a linear ``head``: ids ``(N, L)`` → logits
    ``(N, num_classes)``.  Arguments as :class:`TextEncoder`'s."""

    def __init__(
        self,
        num_classes: int = 2,
        vocab_size: int = VOCAB_SIZE,
        dim: int = 64,
        layers: int = 1,
        heads: int = 4,
        max_length: int = 128,
        embedding: Tensor | None = None,
    ):
        super().__init__()
        self.features = TextEncoder(vocab_size, dim, layers, heads, max_length, embedding)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.features(ids))


def pca_embeddings(weight: Tensor, dim: int) -> Tensor:
    """The rows of a pretrained embedding matrix ``(V, D)`` projected on its ``dim`` principal
    directions ``(V, dim)``, scaled to unit variance per direction: a small student can start from
    what a large model learnt about words (as Tang et al. 2019 start theirs from word2vec)."""
    w = weight.detach().float()
    centred = w - w.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    z = centred @ v[:dim].T
    return z / z.std(0).clamp(min=1e-8)
