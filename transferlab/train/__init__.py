"""Training: one CUDA-aware loop with loss-term hooks, history, checkpoints (chapter "Pretrain and fine-tune")."""

from transferlab.train.checkpoint import CheckpointError, read_checkpoint
from transferlab.train.device import seed_everything, select_device
from transferlab.train.history import History
from transferlab.train.trainer import Step, Trainer, fit, steps_to_epochs

__all__ = [
    "CheckpointError",
    "History",
    "Step",
    "Trainer",
    "fit",
    "read_checkpoint",
    "seed_everything",
    "select_device",
    "steps_to_epochs",
]
