"""Domain adaptation (page ``book/adapt.md``): gradient reversal, MMD, CORAL, the proxy
A-distance, and the adaptation losses (DANN, CDAN, MMD, CORAL, self-training, entropy, MCC)
with the Trainer term that applies them (:mod:`transferlab.adapt.losses`)."""

from transferlab.adapt.alignment import coral_loss, gaussian_kernel, mmd2, mmd_loss
from transferlab.adapt.divergence import proxy_a_distance
from transferlab.adapt.grl import GradientReversal, grad_reverse
from transferlab.adapt.losses import (
    AdaptLoss,
    AdaptTerm,
    CDANLoss,
    CORALLoss,
    DANNLoss,
    EntropyLoss,
    MCCLoss,
    MMDLoss,
    SelfTrainingLoss,
    make_term,
)

__all__ = [
    "AdaptLoss",
    "AdaptTerm",
    "CDANLoss",
    "CORALLoss",
    "DANNLoss",
    "EntropyLoss",
    "GradientReversal",
    "MCCLoss",
    "MMDLoss",
    "SelfTrainingLoss",
    "coral_loss",
    "gaussian_kernel",
    "grad_reverse",
    "make_term",
    "mmd2",
    "mmd_loss",
    "proxy_a_distance",
]
