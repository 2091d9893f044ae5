"""Training: one CUDA-aware loop with loss-term and step hooks, history, checkpoints, and
``torchrun`` scale-out (page ``book/finetune.md``)."""

from transferlab.train import distributed
from transferlab.train.batch import Batch, UnlabelledStream, batches
from transferlab.train.callbacks import Callback
from transferlab.train.checkpoint import CheckpointError, from_source, read_checkpoint
from transferlab.train.device import seed_everything, select_device
from transferlab.train.history import History
from transferlab.train.schedules import AnnealedLR, StepLog
from transferlab.train.supervised import SupervisedLoss
from transferlab.train.terms import FunctionTerm, LossTerm, Step
from transferlab.train.trainer import Trainer, fit, train_mode

__all__ = [
    "AnnealedLR",
    "Batch",
    "Callback",
    "CheckpointError",
    "FunctionTerm",
    "History",
    "LossTerm",
    "Step",
    "StepLog",
    "SupervisedLoss",
    "Trainer",
    "UnlabelledStream",
    "batches",
    "distributed",
    "fit",
    "from_source",
    "read_checkpoint",
    "seed_everything",
    "select_device",
    "train_mode",
]
