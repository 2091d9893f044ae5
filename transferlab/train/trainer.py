"""The one training loop of the course.

Methods of later chapters plug in as *loss terms* (L2-SP, DANN, MMD, CORAL, entropy) or
*callbacks* (gradual unfreezing), never as copies of this loop.  At every step, on a
:class:`~transferlab.train.batch.Batch`:

    features, logits = model(x ⊕ unlabelled)        (one forward pass: f = g ∘ h)
    loss = cross_entropy(logits, y) + Σ_term term(step)

A loss term is any callable ``term(step: Step) -> Tensor`` (a scalar), or ``-> (Tensor, dict)``
to log extra metrics (the :class:`LossTerm` protocol); its ``name`` attribute (default: its class
name) labels it in the history, its parameters (a DANN discriminator's) are always optimised,
and ``needs_unlabelled = True`` makes :meth:`Trainer.fit` require ``unlabelled=`` data.  The
terms of the package: :class:`~transferlab.finetune.L2SP`,
:class:`~transferlab.adapt.losses.AdaptTerm` (MMD, CORAL, DANN, self-training, entropy).

Multi-task models (chapter "Multi-task learning", :mod:`transferlab.multitask`): a label equal
to ``MISSING`` (-1, :mod:`transferlab.train.batch`) is left out of its task's loss and accuracy
(``ce_t = Σ_{i: y_it ≠ -1} CE_i / #{i: y_it ≠ -1}``, 0 for a batch without a label of task t);
a group label of floating point is a regression target for a head with one output, trained by
the masked mean squared error (``mse_t``, a NaN target being missing, :func:`masked_mse`);
the per-task losses reach the terms as ``step.task_losses``, and a term with
``replaces_supervised = True`` (task weighting, alternating schedules) returns the whole
supervised loss in their place: ``loss = term(step) + Σ_other terms``.

A callback is any object with some of ``on_epoch_start(trainer, epoch)``,
``on_epoch_end(trainer, epoch, record)``, ``on_step_start(trainer, step)`` (the global step
index, before the forward pass) and ``on_step_end(trainer, step, parts)`` (the :class:`Step`
and its detached loss parts, after the optimiser step); ``trainer.total_steps`` is the number
of steps the current ``fit`` plans (:mod:`transferlab.train.schedules` uses it).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from transferlab.data.splits import TensorSplit
from transferlab.models.protocol import FeaturesAndLogits, Logits, head_names, unwrap
from transferlab.train import distributed
from transferlab.train.batch import (
    MISSING,
    Batch,
    Data,
    UnlabelledStream,
    as_split,
    batches,
    known_labels,
    num_batches,
    sample_shape,
)
from transferlab.train.checkpoint import CheckpointError, read_checkpoint
from transferlab.train.device import amp_dtype, select_device
from transferlab.train.history import History


@dataclass
class Step:
    """What a loss term sees at one training step.

    Attributes:
        model: the model being trained (unwrapped: its own ``features``, ``head``, parameters).
        batch: the :class:`~transferlab.train.batch.Batch` (``x``, ``y``, ``groups``, ``unlabelled``).
        features: ``h(x)`` ``(B, D)``, or ``None`` for a model without ``features``/``head``.
        logits: ``g(h(x))`` ``(B, C)`` (``{task: (B, C_task)}`` for a ``ModuleDict`` head).
        unlabelled_features, unlabelled_logits: the same for ``batch.unlabelled`` (or ``None``).
        epoch: 0-based epoch; step: 0-based global step; progress: fraction of the planned
            steps done, in [0, 1] (for schedules such as DANN's λ).
        device: where the batch lives; generator: a seeded CPU generator for any sampling.
        task_losses: ``{task: scalar}``, the masked cross-entropy of each head (``{"y": ce}``
            for a single head), with their graph, for task weighting.
    """

    model: nn.Module
    batch: Batch
    features: Tensor | None
    logits: Logits
    unlabelled_features: Tensor | None
    unlabelled_logits: Logits | None
    epoch: int
    step: int
    progress: float
    device: torch.device
    generator: torch.Generator
    task_losses: dict[str, Tensor] = field(default_factory=dict)

    @property
    def x(self) -> Tensor:
        return self.batch.x

    @property
    def y(self) -> Tensor:
        return self.batch.y


@runtime_checkable
class LossTerm(Protocol):
    """``term(step) -> scalar`` or ``(scalar, {metric: value})``, added to the cross-entropy."""

    def __call__(self, step: Step) -> Tensor | tuple[Tensor, dict[str, Tensor]]: ...


def default_progress() -> bool:
    """Progress bars unless ``TRANSFERLAB_QUIET`` is set (the book build and the tests set it)."""
    return not os.environ.get("TRANSFERLAB_QUIET")


def _labels(batch: Batch, task: str) -> Tensor:
    return batch.y if task == "y" else batch.groups[task]


def masked_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy over the samples whose label is not ``MISSING``; 0 (keeping the graph)
    when none has one.  ``logits``: ``(B, C)``; ``y``: ``(B,)`` in ``[0, C) ∪ {MISSING}``."""
    total = F.cross_entropy(logits.float(), y, ignore_index=MISSING, reduction="sum")
    return total / (y != MISSING).sum().clamp(min=1)


def masked_mse(out: Tensor, y: Tensor) -> Tensor:
    """Mean squared error of a regression head over the samples whose target is not NaN; 0
    (keeping the graph) when none has one.  ``out``: ``(B, 1)``; ``y``: ``(B,)`` floating point."""
    known = known_labels(y)
    err = (out[:, 0].float() - torch.where(known, y, torch.zeros_like(y)).float()) ** 2
    return torch.where(known, err, torch.zeros_like(err)).sum() / known.sum().clamp(min=1)


def _task_loss(out: Tensor, y: Tensor) -> Tensor:
    """The masked loss of one head: cross-entropy for class labels, squared error for float targets."""
    return masked_mse(out, y) if y.is_floating_point() else masked_cross_entropy(out, y)


def _correct(logits: Logits, batch: Batch) -> tuple[Tensor, Tensor]:
    """Correct predictions and labelled samples in the batch, of head ``"y"`` (or the first head)
    of a multi-head model; samples whose label is ``MISSING`` count in neither."""
    if isinstance(logits, dict):
        task = "y" if "y" in logits else next(iter(logits))
        logits, y = logits[task], _labels(batch, task)
    else:
        y = batch.y
    known = y != MISSING
    return ((logits.detach().argmax(1) == y) & known).sum(), known.sum()


def _split_logits(logits: Logits, n: int) -> tuple[Logits, Logits]:
    if isinstance(logits, dict):
        return {t: v[:n] for t, v in logits.items()}, {t: v[n:] for t, v in logits.items()}
    return logits[:n], logits[n:]


class Trainer:
    """Train and evaluate a classifier, with the extras a course needs.

    Args:
        model: an ``nn.Module`` mapping ``(N, C, H, W)`` to logits ``(N, num_classes)``; with
            ``features`` and ``head`` (f = g ∘ h) the loss terms also get the features, and a
            ``ModuleDict`` head trains one task per head, each on the group label of its name
            (``"y"``: the split's main labels).
        lr: learning rate of the default optimiser (Adam).
        optimizer: ``None`` (Adam), a callable ``params -> Optimizer``, or an Optimizer instance.
        params: parameters or parameter groups for the optimiser (e.g. from
            :func:`transferlab.finetune.discriminative_lr_groups`); default: the model's. The
            parameters of loss terms that are ``nn.Module`` s are always added.
        scheduler: a callable ``optimizer -> LRScheduler``, stepped once per epoch.
        loss_terms: extra loss terms (see the module docstring).
        callbacks: epoch and step hooks (see the module docstring).
        batch_size: mini-batch size per process; the last partial batch is dropped when the data
            holds at least one full batch (new batch shapes make oneDNN recompile on the CPU).
        device: ``"auto"`` (CUDA → MPS → CPU; ``cuda:LOCAL_RANK`` under ``torchrun``) or a device.
        amp: mixed precision on CUDA: ``torch.autocast`` in bf16 where the GPU supports it, else
            fp16 with a gradient scaler.  Ignored on MPS, and on the CPU unless ``cpu_amp`` is set:
            they train in float32 (CPU bf16 autocast is slower than float32 on CPUs without native
            bf16, and its rounding changes the numbers); ``trainer.amp_dtype`` says what is used
            (``None``: off).
        cpu_amp: on the CPU, bf16 autocast when the CPU has native bf16
            (:func:`~transferlab.train.device.cpu_has_native_bf16`), float32 elsewhere: the
            course's benchmarks turn it on (the small CNN's step about 1.5× faster, a transformer's
            1.6–1.8×); ``$TRANSFERLAB_FP32=1`` turns every autocast off.  Loss terms always compute
            in float32, on upcast features and logits.
        channels_last: store the model's weights and the image batches in the NHWC
            ``torch.channels_last`` layout; ``None`` (default): whenever the model has a 2-D
            convolution (on this course's CPU the small CNN's step is about 1.3× faster, and the
            tensor cores of recent GPUs prefer it too).
        seed: seeds the batch order, and (separately) the order of the unlabelled batches (model
            initialisation is seeded by the caller, e.g. with
            :func:`~transferlab.train.device.seed_everything`).
        progress: show ``tqdm`` progress bars (default: on unless ``TRANSFERLAB_QUIET`` is set).
        compile: run the forward pass through ``torch.compile`` (a string names its backend);
            worth it for large models on a GPU, where the first steps pay for the compilation.
        num_workers: worker processes of the ``DataLoader`` that batches data read from disk
            (a ``Dataset``, e.g. :func:`transferlab.data.folder.load_folder`'s streaming splits);
            in-memory tensors never need them.
        backend: ``torch.distributed`` backend under ``torchrun`` (default: NCCL on CUDA, else
            gloo); see :mod:`transferlab.train.distributed`.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float = 1e-3,
        optimizer: torch.optim.Optimizer | Callable | None = None,
        params: Iterable | None = None,
        scheduler: Callable | None = None,
        loss_terms: Sequence[LossTerm] = (),
        callbacks: Sequence[object] = (),
        batch_size: int = 64,
        device: str | torch.device = "auto",
        amp: bool = True,
        cpu_amp: bool = False,
        seed: int = 0,
        progress: bool | None = None,
        compile: bool | str = False,
        backend: str | None = None,
        channels_last: bool | None = None,
        num_workers: int = 0,
    ):
        self.ranks = distributed.setup(backend)
        if self.ranks.world > 1 and device == "auto" and torch.cuda.is_available():
            device = f"cuda:{self.ranks.local_rank}"
        self.device = select_device(device)
        if self.device.type == "cuda" and self.device.index is not None:
            torch.cuda.set_device(self.device)
        self.model = unwrap(model).to(self.device)
        if channels_last is None:
            channels_last = any(isinstance(m, nn.Conv2d) for m in self.model.modules())
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.num_workers = num_workers
        net: nn.Module = FeaturesAndLogits(self.model)
        if self.ranks.world > 1:
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if compile:
            net = (
                torch.compile(net, backend=compile)
                if isinstance(compile, str)
                else torch.compile(net)
            )
        self.net = net
        self.loss_terms = list(loss_terms)
        replacing = [t for t in self.loss_terms if getattr(t, "replaces_supervised", False)]
        if len(replacing) > 1:
            names = [getattr(t, "name", type(t).__name__) for t in replacing]
            raise ValueError(
                f"at most one loss term may replace the supervised loss (task weighting or "
                f"an alternating schedule), got {names}"
            )
        self._replacing = replacing[0] if replacing else None
        modules = [t.to(self.device) for t in self.loss_terms if isinstance(t, nn.Module)]
        term_params = [p for m in modules for p in m.parameters() if p.requires_grad]
        if params is None:
            params = list(self.model.parameters()) + term_params
        else:  # a learnable loss term (a DANN discriminator) is optimised whatever params says
            # a group's "params" may be a generator (model.parameters()): read it once, here
            params = [
                dict(g, params=list(g["params"])) if isinstance(g, dict) else g for g in params
            ]
            given = {id(p) for g in params for p in (g["params"] if isinstance(g, dict) else [g])}
            missing = [p for p in term_params if id(p) not in given]
            if missing:
                groups = params if params and isinstance(params[0], dict) else [{"params": params}]
                params = [*groups, {"params": missing}]
        if optimizer is None:
            # fused Adam: one kernel for all parameters (about 15 % faster per step on this CPU)
            self.optimizer = torch.optim.Adam(
                params, lr=lr, fused=self.device.type in ("cpu", "cuda")
            )
        elif isinstance(optimizer, torch.optim.Optimizer):
            self.optimizer = optimizer
            have = {id(p) for g in optimizer.param_groups for p in g["params"]}
            if missing := [p for p in term_params if id(p) not in have]:
                optimizer.add_param_group({"params": missing})
        else:
            self.optimizer = optimizer(params)
        self.scheduler = scheduler(self.optimizer) if scheduler is not None else None
        self.callbacks = list(callbacks)
        self.batch_size = batch_size
        self.amp_dtype = amp_dtype(self.device, cpu=cpu_amp) if amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.unlabelled: UnlabelledStream | None = None
        self.progress = (
            default_progress() if progress is None else progress
        ) and self.ranks.is_main
        self.epoch = 0  # epochs completed
        self.step = 0  # optimiser steps taken
        self.total_steps = 0  # steps planned by the current fit()
        self.history = History()

    # ------------------------------------------------------------------ checks
    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def check_data(self, data: Data, what: str = "training data") -> None:
        """Fail early, with a clear message, on data the model cannot train on.

        For a multi-head model, labels equal to ``MISSING`` (-1) are allowed (that task is
        unlabelled for that sample), and a head with one output may take floating-point group
        labels: a regression target, NaN where missing.
        Evaluation data may lack a head's group label (that task is then not scored); training
        data must hold one, with at least one label.

        Raises:
            ValueError: empty data, non-integer labels (other than a regression target of a
                one-output head), labels outside ``[0, num_classes)``,
                an input shape the model cannot take, a head without its group label, or (in
                training data) a head whose task has no label anywhere.
        """
        split = as_split(data)
        if split is None:
            if len(data) == 0:
                raise ValueError(
                    f"{what} is empty (0 samples): check the split or the k of few_shot()"
                )
            first = next(batches(torch.utils.data.Subset(data, [0]), 1, shuffle=False))
            x, labels = first.x, {"y": first.y, **first.groups}
        else:
            x, labels = split.x, {"y": split.y, **split.groups}
        if len(x) == 0:
            raise ValueError(f"{what} is empty (0 samples): check the split or the k of few_shot()")
        tasks = head_names(self.model)
        training = what == "training data"
        if training and tasks is not None and (absent := [t for t in tasks if t not in labels]):
            raise ValueError(
                f"{what}: the model has a head for task(s) {absent} but the data has no such group label "
                f"(it has {sorted(labels)}); add them to TensorSplit.groups, or name the head of the "
                "split's main labels 'y'"
            )
        for name, y in labels.items():
            regression = (
                y.dtype.is_floating_point and tasks is not None and name in tasks and name != "y"
            )
            if (y.dtype.is_floating_point and not regression) or y.dtype == torch.bool:
                which = "labels" if name == "y" else f"group labels {name!r}"
                raise ValueError(
                    f"{what}: {which} must be integer class indices (int64), got {y.dtype}"
                )
        if training and split is not None and tasks is not None:
            unlabelled = [t for t in tasks if not bool(known_labels(labels[t]).any())]
            if unlabelled:
                raise ValueError(
                    f"{what}: the head(s) for task(s) {unlabelled} have no label anywhere in the training data "
                    f"(every label is MISSING = {MISSING}): drop those heads or add labelled samples of those tasks"
                )
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                _, out = FeaturesAndLogits(self.model)(x[:2].to(self.device))
        except RuntimeError as exc:
            raise ValueError(
                f"{what}: the model cannot take inputs of shape {tuple(x.shape[1:])} "
                f"(one sample, as (C, H, W)): {str(exc).splitlines()[0]}. "
                "Build the model for these images (e.g. SmallCNN(in_channels=...)) or convert the data."
            ) from exc
        finally:
            self.model.train(was_training)
        for task, logits in out.items() if isinstance(out, dict) else [("y", out)]:
            if logits.ndim != 2:
                raise ValueError(
                    f"the model must return logits of shape (N, num_classes), got {tuple(logits.shape)}"
                )
            if task not in labels:  # evaluation data without this task: not scored
                continue
            y, num_classes = labels[task], logits.shape[1]
            if y.dtype.is_floating_point:  # a regression target (allowed above only for a head)
                if num_classes != 1:
                    raise ValueError(
                        f"{what}: group labels {task!r} are floating point, a regression target, but its head "
                        f"has {num_classes} outputs: give a regression task a head with one output, or "
                        "class labels as integers (int64)"
                    )
                continue
            # MISSING marks an absent label of one task of a multi-head model; a single head has one task
            bad = ((y < 0) & ((y != MISSING) | (tasks is None))) | (y >= num_classes)
            if bad.any():
                pos = torch.nonzero(bad).flatten()
                values = sorted(set(y[pos].tolist()))
                which = "labels" if task == "y" else f"group labels {task!r}"
                raise ValueError(
                    f"{what}: {which} must lie in [0, {num_classes}) for a head with {num_classes} outputs, "
                    f"but {len(pos)} label(s) do not: values {values[:10]} at positions {pos[:10].tolist()}. "
                    f"Fix the labels, or give the model a head with more outputs (transferlab.models.new_head)."
                )

    def _check_fit(
        self, train: Data, unlabelled, epochs: int | None, max_steps: int | None
    ) -> None:
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps <= 0):
            raise ValueError(
                f"max_steps must be a positive number of optimiser steps, got {max_steps!r}"
            )
        if epochs is not None and (not isinstance(epochs, int) or epochs < 0):
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        needs = [
            getattr(t, "name", type(t).__name__)
            for t in self.loss_terms
            if getattr(t, "needs_unlabelled", False)
        ]
        if needs and unlabelled is None:
            raise ValueError(
                f"the loss term(s) {needs} need unlabelled data: pass fit(train, unlabelled=target.train)"
            )
        if unlabelled is not None:
            if not isinstance(unlabelled, (Tensor, TensorSplit)):
                raise ValueError(
                    "unlabelled must be a tensor of images (M, C, H, W) or a TensorSplit (its labels are ignored)"
                )
            shape_u, shape_l = sample_shape(unlabelled), sample_shape(train)
            if shape_u != shape_l:
                raise ValueError(
                    f"the unlabelled images have shape {shape_u} (C, H, W) but the labelled ones {shape_l}: "
                    "both must be images of the same size and channels (render or resize them alike)"
                )

    # ---------------------------------------------------------------- training
    def _supervised(self, logits: Logits, batch: Batch) -> dict[str, Tensor]:
        """The masked loss of each task, ``{task: scalar}`` (``{"y": ce}`` for one head):
        cross-entropy, or the squared error of a regression target (:func:`_task_loss`)."""
        if isinstance(logits, dict):
            return {t: _task_loss(v, _labels(batch, t)) for t, v in logits.items()}
        return {"y": masked_cross_entropy(logits, batch.y)}

    def fit(
        self,
        train: Data,
        val: Data | None = None,
        epochs: int | None = None,
        *,
        unlabelled: Tensor | Data | None = None,
        max_steps: int | None = None,
        checkpoint: str | Path | None = None,
        resume: bool = False,
    ) -> History:
        """Train until ``epochs`` epochs or ``max_steps`` optimiser steps are done in total,
        whichever comes first (default: 5 epochs); return the history.

        Args:
            train: a :class:`~transferlab.data.splits.TensorSplit`, an ``(x, y)`` tuple of
                tensors, or a ``Dataset`` of ``(x, y)`` or ``(x, y, groups)`` items.
            val: evaluated after each epoch (``val_loss``, ``val_acc``); use the *validation*
                split here, never the test split.
            epochs: total number of epochs (a resumed run continues up to it).
            unlabelled: unlabelled images ``(M, C, H, W)`` (or a ``TensorSplit``, labels
                ignored), e.g. ``target.train`` for domain adaptation: each step adds a batch of
                them, drawn by the Trainer with a generator of its own (the labelled batches
                keep their order), and the loss terms get their features and logits.
            max_steps: a budget in optimiser steps (the last epoch may be partial).
            checkpoint: if given, written after every epoch (by rank 0 alone under ``torchrun``).
            resume: continue from ``checkpoint`` when that file exists.

        Returns:
            the :class:`~transferlab.train.history.History`: per epoch ``epoch``, ``loss``, ``ce``
            (or ``ce_<task>``), each loss term's value, ``acc``, ``images_per_s`` (training
            images per second of wall-clock time, data loading included) and, with ``val``,
            ``val_loss`` and ``val_acc``.

        Raises:
            ValueError: bad data or settings (see :meth:`check_data`), a loss term that needs
                ``unlabelled`` without it, or that returns a non-scalar.
            FloatingPointError: the loss became NaN or infinite (the message names the step).
            CheckpointError: ``resume`` from a corrupt or mismatched checkpoint.
        """
        self._check_fit(train, unlabelled, epochs, max_steps)
        if epochs is None:
            epochs = (
                5
                if max_steps is None
                else math.ceil(max_steps / num_batches(train, self.batch_size, self.ranks.world))
            )
        self.check_data(train)
        if val is not None:
            self.check_data(val, "validation data")
        self.unlabelled = None
        if unlabelled is not None:
            self.unlabelled = UnlabelledStream(
                unlabelled, seed=self.seed + 7919, rank=self.ranks.rank, world=self.ranks.world
            ).to(self.device)
        if resume and checkpoint is not None and Path(checkpoint).exists():
            self.load(checkpoint)
        split = as_split(train)
        if split is not None:  # move small in-memory data to the device once, not every epoch
            train = split.to(self.device)
        per_epoch = num_batches(train, self.batch_size, self.ranks.world)
        total = max(1, min(epochs * per_epoch, max_steps or math.inf))
        self.total_steps = total  # what step-level schedules count progress against
        bar = tqdm(
            total=total,
            initial=min(self.step, total),
            desc="train",
            disable=not self.progress,
            leave=False,
        )
        try:
            for epoch in range(self.epoch, epochs):
                if self.step >= total:
                    break
                for cb in self.callbacks:
                    if hasattr(cb, "on_epoch_start"):
                        cb.on_epoch_start(self, epoch)
                record = self._train_epoch(train, epoch, total, bar)
                if val is not None:
                    record.update({f"val_{k}": v for k, v in self.evaluate(val).items()})
                if self.scheduler is not None:
                    self.scheduler.step()
                self.epoch = epoch + 1
                record = {"epoch": float(self.epoch), **record}
                self.history.append(record)
                bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k != "epoch"})
                for cb in self.callbacks:
                    if hasattr(cb, "on_epoch_end"):
                        cb.on_epoch_end(self, epoch, record)
                if checkpoint is not None:
                    self.save(checkpoint)
        finally:
            bar.close()
        return self.history

    @staticmethod
    def _term(term: LossTerm, step: Step, parts: dict[str, Tensor]) -> Tensor:
        """One loss term's value (a scalar, checked), its parts logged under its name."""
        out = term(step)
        value, extra = out if isinstance(out, tuple) else (out, {})
        name = getattr(term, "name", type(term).__name__)
        if not isinstance(value, Tensor) or value.dim() != 0:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"loss term {name!r} must return a scalar tensor (shape ()), got {shape}; "
                "reduce it, e.g. with .mean() or .sum()"
            )
        parts[name] = value.detach().float()
        parts.update({f"{name}_{k}": torch.as_tensor(v).detach() for k, v in extra.items()})
        return value.float()

    def _images(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x

    def _train_epoch(self, train: Data, epoch: int, total: int, bar) -> dict[str, float]:
        train_mode(self.model)
        started = time.perf_counter()
        sums: dict[str, Tensor] = {}
        correct = torch.zeros((), device=self.device)
        labelled = torch.zeros((), device=self.device)
        seen = 0
        batch_iter = batches(
            train,
            self.batch_size,
            shuffle=True,
            generator=self.generator,
            rank=self.ranks.rank,
            world=self.ranks.world,
            num_workers=self.num_workers,
        )
        for i, batch in enumerate(batch_iter):
            if self.step >= total:
                break
            for cb in self.callbacks:
                if hasattr(cb, "on_step_start"):
                    cb.on_step_start(self, self.step)
            if batch.x.device != self.device:  # in-memory data was moved once, in fit()
                batch = batch.to(self.device)
            if self.unlabelled is not None:
                batch.unlabelled = self.unlabelled.next(len(batch))
            n = len(batch)
            with self._autocast():
                x = batch.x if batch.unlabelled is None else torch.cat([batch.x, batch.unlabelled])
                feats, logits = self.net(self._images(x))
                u_feats = u_logits = None
                if batch.unlabelled is not None:
                    feats, u_feats = (None, None) if feats is None else (feats[:n], feats[n:])
                    logits, u_logits = _split_logits(logits, n)
            if self.amp_dtype is not None:  # the losses in float32, whatever the forward pass used
                logits, u_logits = _upcast(logits), _upcast(u_logits)
                if self.loss_terms:  # only loss terms read the features
                    feats, u_feats = _upcast(feats), _upcast(u_feats)
            task_losses = self._supervised(logits, batch)
            if isinstance(logits, dict):
                parts = {
                    f"{'mse' if _labels(batch, t).is_floating_point() else 'ce'}_{t}": v.detach()
                    for t, v in task_losses.items()
                }
            else:
                parts = {"ce": task_losses["y"].detach()}
            step = Step(
                self.model,
                batch,
                feats,
                logits,
                u_feats,
                u_logits,
                epoch,
                self.step,
                self.step / total,
                self.device,
                self.generator,
                task_losses,
            )
            loss = 0.0 if self._replacing is not None else sum(task_losses.values())
            for term in self.loss_terms:
                loss = loss + self._term(term, step, parts)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the loss is {loss.item()} at epoch {epoch + 1}, batch {i + 1} (optimiser step "
                    f"{self.step + 1}); parts: { {k: float(v) for k, v in parts.items()} }. "
                    "Lower the learning rate or a loss-term weight, and check the inputs for NaN/inf."
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            parts["loss"] = loss.detach()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * n
            right, known = _correct(logits, batch)
            correct += right
            labelled += known
            seen += n
            for cb in self.callbacks:
                if hasattr(cb, "on_step_end"):
                    cb.on_step_end(self, step, parts)
            bar.update(1)
        names = list(sums)
        seen_t = torch.tensor(float(seen), device=self.device)
        totals = distributed.all_reduce_sum(
            torch.stack(
                [*(sums[k].float() for k in names), correct.float(), labelled.float(), seen_t]
            )
        )
        seen_all = max(float(totals[-1]), 1.0)
        record = {k: float(v) / seen_all for k, v in zip(names, totals[: len(names)])}
        record["acc"] = float(totals[-3]) / max(float(totals[-2]), 1.0)
        # float(totals) waited for the device, so the clock covers the GPU's work too
        record["images_per_s"] = seen_all / max(time.perf_counter() - started, 1e-9)
        return record

    # -------------------------------------------------------------- evaluation
    @torch.no_grad()
    def _outputs(self, data: Data, batch_size: int) -> tuple[Logits, dict[str, Tensor]]:
        """Logits and labels (``{"y": ..., **groups}``) of every sample, in order, on the CPU."""
        self.model.eval()
        outs: list[Logits] = []
        labels: dict[str, list[Tensor]] = {}
        for batch in batches(data, batch_size, shuffle=False, num_workers=self.num_workers):
            with self._autocast():
                logits = FeaturesAndLogits(self.model)(
                    self._images(batch.x.to(self.device, non_blocking=True))
                )[1]
            if isinstance(logits, dict):
                outs.append({t: v.float().cpu() for t, v in logits.items()})
            else:
                outs.append(logits.float().cpu())
            for name, y in {"y": batch.y, **batch.groups}.items():
                labels.setdefault(name, []).append(torch.as_tensor(y).cpu())
        ys = {name: torch.cat(v) for name, v in labels.items()}
        if isinstance(outs[0], dict):
            return {t: torch.cat([o[t] for o in outs]) for t in outs[0]}, ys
        return torch.cat(outs), ys

    def predict(self, data: Data, batch_size: int = 1024) -> Logits:
        """Logits ``(N, num_classes)`` for every sample, in order, on the CPU
        (``{task: (N, C_task)}`` for a multi-head model)."""
        return self._outputs(data, batch_size)[0]

    def evaluate(self, data: Data, batch_size: int = 1024) -> dict[str, float]:
        """``{"loss": mean cross-entropy, "acc": accuracy}`` on ``data``; for a multi-head model
        also ``{task}_loss`` and ``{task}_acc`` per head that ``data`` labels (``loss`` is their
        sum, ``acc`` that of head ``"y"``, else of the first scored head).  Samples whose label
        is ``MISSING`` are left out of their task's scores; a task without any label in ``data``
        is not scored; a regression head (float targets) gets ``{task}_loss``, its mean squared
        error, and no accuracy."""
        self.check_data(data, "evaluation data")
        logits, labels = self._outputs(data, batch_size)
        heads = logits if isinstance(logits, dict) else {"y": logits}
        out = {}
        for task, v in heads.items():
            y = labels.get(task)
            if y is None or not bool(known_labels(y).any()):
                continue
            known = known_labels(y)
            if y.is_floating_point():  # a regression target: its loss only
                out[f"{task}_loss"] = F.mse_loss(v[known][:, 0].float(), y[known].float()).item()
                continue
            out[f"{task}_loss"] = F.cross_entropy(v[known], y[known]).item()
            out[f"{task}_acc"] = (v[known].argmax(1) == y[known]).float().mean().item()
        scored = [t for t in heads if f"{t}_loss" in out]
        if not scored:
            raise ValueError(f"evaluation data: no label for any task of the model ({list(heads)})")
        if not isinstance(logits, dict):
            return {"loss": out["y_loss"], "acc": out["y_acc"]}
        classified = [t for t in scored if f"{t}_acc" in out]
        acc = (
            {"acc": out[f"{'y' if 'y' in classified else classified[0]}_acc"]} if classified else {}
        )
        return {"loss": sum(out[f"{t}_loss"] for t in scored), **acc, **out}

    # ------------------------------------------------------------- checkpoints
    def save(self, path: str | Path) -> None:
        """Write model, optimiser, scheduler, RNG states, epoch, step and history to ``path``
        (under ``torchrun``: rank 0 writes, the others wait for it)."""
        if not self.ranks.is_main:
            distributed.barrier()
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "model": self.model.state_dict(),
            "model_config": getattr(self.model, "config", None) or {},
            "optimizer": self.optimizer.state_dict(),
            "terms": [t.state_dict() for t in self.loss_terms if isinstance(t, nn.Module)],
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "scaler": self.scaler.state_dict(),
            "rng": {"batches": self.generator.get_state(), "torch": torch.get_rng_state()},
            "unlabelled": self.unlabelled.state_dict() if self.unlabelled is not None else {},
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history.records,
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)  # never leave a half-written checkpoint behind
        distributed.barrier()

    def load(self, path: str | Path) -> None:
        """Restore everything :meth:`save` wrote, so that :meth:`fit` continues the same run.

        Raises:
            CheckpointError: missing, corrupt, or written for another model.
        """
        state = read_checkpoint(path)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            for term, term_state in zip(
                [t for t in self.loss_terms if isinstance(t, nn.Module)], state.get("terms", [])
            ):
                term.load_state_dict(term_state)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"checkpoint {path} does not fit this model/optimiser: {str(exc).splitlines()[0]}"
            ) from exc
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rng = state.get("rng", {})
        if "batches" in rng:
            self.generator.set_state(rng["batches"])
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if self.unlabelled is not None and state.get("unlabelled"):
            self.unlabelled.load_state_dict(state["unlabelled"])
        self.epoch, self.step = int(state.get("epoch", 0)), int(state.get("step", 0))
        self.history = History(list(state.get("history", [])))


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()``, except that a BatchNorm layer whose affine parameters are all frozen
    stays in eval mode: it normalises with its running statistics and does not update them.

    This is what practitioners do (Keras's ``trainable = False`` convention, timm's frozen BN):
    in a linear probe (:func:`~transferlab.finetune.linear_probe`) the frozen features must be
    the *pretrained* function of the input; in train mode, BatchNorm would normalise each batch
    by its own statistics and overwrite the ImageNet running averages with the target's, so the
    features would drift although no weight is trained, and small target batches would make them
    noisy.  In full fine-tuning every BatchNorm has trainable parameters and trains normally.
    Returns ``model``.
    """
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()
    return model


def _upcast(t: Logits | None) -> Logits | None:
    """Float32 copies of autocast outputs (a tensor, a dict of heads, or ``None``)."""
    if isinstance(t, dict):
        return {k: v.float() for k, v in t.items()}
    return None if t is None else t.float()


def fit(
    model: nn.Module, train: Data, val: Data | None = None, epochs: int | None = None, **kwargs
) -> Trainer:
    """Shortcut: ``Trainer(model, **kwargs).fit(train, val, epochs)``; returns the trainer."""
    trainer = Trainer(model, **kwargs)
    trainer.fit(train, val, epochs=epochs)
    return trainer
