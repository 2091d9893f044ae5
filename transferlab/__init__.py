"""transferlab: the package behind the course on knowledge transfer between deep-learning models.

One module per idea of the book:
``data`` (domains), ``models`` (f = g ∘ h), ``train`` (the Trainer), ``finetune`` (freezing,
discriminative learning rates, L2-SP), ``adapt`` (domain adaptation losses), ``negative``
(negative-transfer gap, LogME, LEEP, the gate), ``distill`` (distillation loss), ``viz`` (plots),
``grading`` (lab checks and batch grading), ``bench`` (the numbers behind the figures).
"""

__version__ = "0.1.0"
