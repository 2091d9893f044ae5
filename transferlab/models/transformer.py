"""A small Transformer that reads an image as a sequence of row tokens, with the book's split
f = g ∘ h (page ``book/distill.md``: LoRA is not CNN-specific)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RowEncoder(nn.Module):
    """h: each of the H rows of an image is a token of W pixel values; a linear embedding plus a
    learnt position embedding, a PyTorch ``nn.TransformerEncoder``, and the mean over tokens.

    Shapes: ``x`` ``(N, 1, H, W)`` → tokens ``(N, H, d_model)`` → features ``(N, d_model)``.
    """

    def __init__(
        self,
        rows: int = 8,
        row_width: int = 8,
        d_model: int = 32,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.embed = nn.Linear(row_width, d_model)
        self.position = nn.Parameter(torch.zeros(rows, d_model))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(x.flatten(1, 2)) + self.position  # (N, 1, H, W) → (N, H, W) → (N, H, d)
        return self.norm(self.encoder(tokens).mean(1))


class RowTransformer(nn.Module):
    """``features`` (a :class:`RowEncoder`) and a linear ``head``.

    Shapes: ``x`` ``(N, 1, H, W)`` → ``features(x)`` ``(N, d_model)`` → logits ``(N, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        rows: int = 8,
        row_width: int = 8,
        d_model: int = 32,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 64,
    ):
        super().__init__()
        self.features = RowEncoder(rows, row_width, d_model, nhead, num_layers, dim_feedforward)
        self.head = nn.Linear(d_model, num_classes)
        self.config = {
            "num_classes": num_classes,
            "rows": rows,
            "row_width": row_width,
            "d_model": d_model,
            "nhead": nhead,
            "num_layers": num_layers,
            "dim_feedforward": dim_feedforward,
        }

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
