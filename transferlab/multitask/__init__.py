"""Multi-task learning (page ``book/multitask.md``): hard parameter sharing, a hierarchy of
tasks, alternating schedules, task weighting, and the cosine of task gradients.

Everything trains with ``transferlab.train.Trainer``: a model with a ``ModuleDict`` head
trains head ``t`` on the batch's group label ``t`` (``"y"``: the main labels); a label equal to
``MISSING`` (-1) is masked out; weightings and schedules are loss terms that replace the sum of
task losses; the gradient cosine is a step callback.
"""

from transferlab.multitask.data import CLOSED_LOOP, coarse_tasks, mix_tasks
from transferlab.multitask.gradients import (
    GradientCosine,
    batch_task_losses,
    gradient_cosine,
    task_gradients,
)
from transferlab.multitask.models import HardSharing, Hierarchical, hard_sharing, hierarchical
from transferlab.multitask.schedules import Alternating, BySize, RoundRobin
from transferlab.multitask.weighting import (
    GradNorm,
    StaticWeights,
    TaskWeighting,
    UncertaintyWeighting,
    last_shared_layer,
)
from transferlab.train.batch import MISSING

__all__ = [
    "CLOSED_LOOP",
    "MISSING",
    "Alternating",
    "BySize",
    "GradNorm",
    "GradientCosine",
    "HardSharing",
    "Hierarchical",
    "RoundRobin",
    "StaticWeights",
    "TaskWeighting",
    "UncertaintyWeighting",
    "batch_task_losses",
    "coarse_tasks",
    "gradient_cosine",
    "hard_sharing",
    "hierarchical",
    "last_shared_layer",
    "mix_tasks",
    "task_gradients",
]
