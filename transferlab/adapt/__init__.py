"""Domain adaptation building blocks: gradient reversal, MMD, CORAL, the proxy A-distance."""

from transferlab.adapt.alignment import coral_loss, gaussian_kernel, mmd2, mmd_loss
from transferlab.adapt.divergence import proxy_a_distance
from transferlab.adapt.grl import GradientReversal, grad_reverse

__all__ = [
    "GradientReversal",
    "coral_loss",
    "gaussian_kernel",
    "grad_reverse",
    "mmd2",
    "mmd_loss",
    "proxy_a_distance",
]
