"""Knowledge distillation (Hinton et al. 2015): the soft-target loss with temperature."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    r"""Distillation loss ``T² · KL(softmax(z_t / T) ‖ softmax(z_s / T))``, averaged over the batch.

    The gradient with respect to the student logits is ``T (q_s − q_t) / N``: without the T²
    factor it would shrink as 1/T (as 1/T² for large T), and the soft-target term would vanish
    next to the hard-label loss when the temperature is raised.

    Args:
        student_logits, teacher_logits: ``(N, C)``.
        temperature: T > 0.
    Returns:
        a scalar tensor.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"logit shapes differ: {tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t = temperature
    log_q_s = F.log_softmax(student_logits / t, dim=1)
    q_t = F.softmax(teacher_logits.detach() / t, dim=1)
    return F.kl_div(log_q_s, q_t, reduction="batchmean") * t * t


__all__ = ["kd_loss"]
