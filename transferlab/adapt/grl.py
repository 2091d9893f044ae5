"""The gradient reversal layer of DANN (Ganin et al. 2016), page ``book/math.md``.

Forward: the identity.  Backward: the incoming gradient multiplied by ``-lambd``.  Put between the
feature extractor and a domain discriminator, it lets one ``backward()`` train the discriminator
to *minimise* the domain loss while the features are trained to *maximise* it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, lambd: float) -> Tensor:
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.lambd * grad, None


def grad_reverse(x: Tensor, lambd: float = 1.0) -> Tensor:
    """Identity on the way forward; gradient times ``-lambd`` on the way back.

    Args:
        x: any tensor, e.g. features ``(N, D)``.
        lambd: the reversal strength λ ≥ 0.
    """
    return _GradReverse.apply(x, float(lambd))


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`; set ``self.lambd`` to change λ during training."""

    def __init__(self, lambd: float = 1.0):
        super().__init__()
        self.lambd = lambd

    def forward(self, x: Tensor) -> Tensor:
        return grad_reverse(x, self.lambd)

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}"
