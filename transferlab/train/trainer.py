"""The one training loop of the course.

Methods of later chapters plug in as *loss terms* (L2-SP, DANN, MMD, CORAL, KD, task
weighting) or *callbacks* (gradual unfreezing, a learning-rate schedule), never as copies of
this loop.  Both derive from declared bases: :class:`~transferlab.train.terms.LossTerm` (its
``name``, whether it ``needs_unlabelled`` data, whether it ``replaces_supervised`` loss, the
``supervised_weight`` it asks for, ``set_progress``) and
:class:`~transferlab.train.callbacks.Callback` (its four hooks; a misspelt hook is refused).
At every step, on a :class:`~transferlab.train.batch.Batch`:

    features, logits = model(x ⊕ unlabelled)        (one forward pass: f = g ∘ h)
    loss = w · Σ_t L_t(logits, y) + Σ_term term(step)

with ``L_t`` the supervised loss of each task
(:class:`~transferlab.train.supervised.SupervisedLoss`: masked cross-entropy, or squared error for a
regression head) and the terms reading a :class:`~transferlab.train.terms.Step`.  The data checks
live in :mod:`transferlab.train.checks`, the checkpoints in :mod:`transferlab.train.checkpoint`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from transferlab.models.protocol import FeaturesAndLogits, Logits, unwrap
from transferlab.train import checks, distributed
from transferlab.train.batch import (
    Data,
    UnlabelledStream,
    as_split,
    batches,
    num_batches,
)
from transferlab.train.callbacks import Callback, check_callbacks
from transferlab.train.checkpoint import load_trainer, save_trainer
from transferlab.train.device import amp_dtype, select_device
from transferlab.train.history import History
from transferlab.train.supervised import SupervisedLoss
from transferlab.train.terms import LossTerm, Step, as_term

__all__ = ["Trainer", "default_progress", "fit", "train_mode"]


def default_progress() -> bool:
    """Progress bars unless ``TRANSFERLAB_QUIET`` is set (the book build and the tests set it)."""
    return not os.environ.get("TRANSFERLAB_QUIET")


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
            trainable parameters of the loss terms are always added.
        scheduler: a callable ``optimizer -> LRScheduler``, stepped once per epoch.
        loss_terms: extra loss terms: :class:`~transferlab.train.terms.LossTerm` s, or plain
            functions ``step -> loss`` (wrapped in a
            :class:`~transferlab.train.terms.FunctionTerm`).
        callbacks: :class:`~transferlab.train.callbacks.Callback` s (an unknown hook name is
            an error).
        supervised: the supervised loss (default: a
            :class:`~transferlab.train.supervised.SupervisedLoss`).
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
        loss_terms: Sequence[LossTerm | Callable[[Step], Tensor]] = (),
        callbacks: Sequence[Callback] = (),
        supervised: SupervisedLoss | None = None,
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
        self.loss_terms: list[LossTerm] = [as_term(t) for t in loss_terms]
        self.callbacks: list[Callback] = check_callbacks(callbacks)
        self.supervised = SupervisedLoss() if supervised is None else supervised
        replacing = [t for t in self.loss_terms if t.replaces_supervised]
        if len(replacing) > 1:
            names = [t.name for t in replacing]
            raise ValueError(
                f"at most one loss term may replace the supervised loss (task weighting or "
                f"an alternating schedule), got {names}"
            )
        self._replacing = replacing[0] if replacing else None
        weighing = [t.name for t in self.loss_terms if t.supervised_weight != 1.0]
        if self._replacing is not None and weighing:
            raise ValueError(
                f"loss term {self._replacing.name!r} returns the whole supervised loss, so the "
                f"weight that {weighing} put on it would be lost: weigh the tasks in "
                f"{self._replacing.name!r} instead"
            )
        self.optimizer = self._optimizer(optimizer, params, lr)
        self.scheduler = scheduler(self.optimizer) if scheduler is not None else None
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

    def _optimizer(
        self, optimizer: torch.optim.Optimizer | Callable | None, params: Iterable | None, lr: float
    ) -> torch.optim.Optimizer:
        """The optimiser of the model's parameters (or ``params``) and, whatever ``params`` says,
        of the loss terms' trainable parameters (a DANN discriminator)."""
        term_params = [
            p for t in self.loss_terms for p in t.to(self.device).parameters() if p.requires_grad
        ]
        if params is None:
            params = list(self.model.parameters()) + term_params
        else:
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
            return torch.optim.Adam(params, lr=lr, fused=self.device.type in ("cpu", "cuda"))
        if isinstance(optimizer, torch.optim.Optimizer):
            have = {id(p) for g in optimizer.param_groups for p in g["params"]}
            if missing := [p for p in term_params if id(p) not in have]:
                optimizer.add_param_group({"params": missing})
            return optimizer
        return optimizer(params)

    # ------------------------------------------------------------------ checks
    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def check_data(self, data: Data, what: str = "training data") -> None:
        """Fail early, with a clear message, on data the model cannot train on (or, with
        ``what`` other than ``"training data"``, be evaluated on): see
        :func:`transferlab.train.checks.check_data`.

        Raises:
            ValueError: what is wrong with the data, and how to fix it.
        """
        checks.check_data(self.model, data, what, device=self.device, autocast=self._autocast)

    # ---------------------------------------------------------------- training

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
        checks.check_fit(self.loss_terms, train, unlabelled, epochs, max_steps)
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
        self._epochs(train, val, epochs, total, checkpoint)
        return self.history

    def _epochs(
        self, train: Data, val: Data | None, epochs: int, total: int, checkpoint: str | Path | None
    ) -> None:
        """Epochs from ``self.epoch`` up to ``epochs`` (or until ``total`` steps), each recorded
        in the history, validated, checkpointed, with the callbacks' epoch hooks."""
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
                    cb.on_epoch_end(self, epoch, record)
                if checkpoint is not None:
                    self.save(checkpoint)
        finally:
            bar.close()

    @staticmethod
    def _term(term: LossTerm, step: Step, parts: dict[str, Tensor]) -> Tensor:
        """One loss term's value (a scalar, checked), its parts logged under its name."""
        term.set_progress(step.progress)
        out = term(step)
        value, extra = out if isinstance(out, tuple) else (out, {})
        name = term.name
        if not isinstance(value, Tensor) or value.dim() != 0:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"loss term {name!r} must return a scalar tensor (shape ()), got {shape}; "
                "reduce it, e.g. with .mean() or .sum()"
            )
        parts[name] = value.detach().float()
        parts.update({f"{name}_{k}": torch.as_tensor(v).detach() for k, v in extra.items()})
        return value.float()

    def _supervised_loss(self, task_losses: dict[str, Tensor]) -> Tensor | float:
        """``w · Σ_t L_t``, ``w`` the product of the terms' ``supervised_weight`` (0.0 when a
        term replaces the supervised loss: it returns it itself)."""
        if self._replacing is not None:
            return 0.0
        weight = math.prod(t.supervised_weight for t in self.loss_terms)
        total = sum(task_losses.values())
        return total if weight == 1.0 else weight * total

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
                cb.on_step_start(self, self.step)
            if batch.x.device != self.device:  # in-memory data was moved once, in fit()
                batch = batch.to(self.device)
            if self.unlabelled is not None:
                batch.unlabelled = self.unlabelled.next(len(batch))
            n = len(batch)
            feats, logits, u_feats, u_logits = self._forward(batch)
            task_losses = self.supervised(logits, batch)
            parts = self.supervised.parts(task_losses, logits, batch)
            step = Step(
                model=self.model,
                batch=batch,
                features=feats,
                logits=logits,
                unlabelled_features=u_feats,
                unlabelled_logits=u_logits,
                epoch=epoch,
                step=self.step,
                progress=self.step / total,
                device=self.device,
                generator=self.generator,
                task_losses=task_losses,
            )
            loss = self._supervised_loss(task_losses)
            for term in self.loss_terms:
                loss = loss + self._term(term, step, parts)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the loss is {loss.item()} at epoch {epoch + 1}, batch {i + 1} "
                    f"(optimiser step {self.step + 1}); "
                    f"parts: { {k: float(v) for k, v in parts.items()} }. "
                    "Lower the learning rate or a loss-term weight, "
                    "and check the inputs for NaN/inf."
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            parts["loss"] = loss.detach()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * n
            right, known = self.supervised.correct(logits, batch)
            correct += right
            labelled += known
            seen += n
            for cb in self.callbacks:
                cb.on_step_end(self, step, parts)
            bar.update(1)
        return self._record(sums, correct, labelled, seen, started)

    def _forward(self, batch) -> tuple[Tensor | None, Logits, Tensor | None, Logits | None]:
        """Features and logits of the labelled batch and of its unlabelled batch (``None``
        without one), in one forward pass; float32 whatever the forward pass computed in."""
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
        return feats, logits, u_feats, u_logits

    def _record(
        self, sums: dict[str, Tensor], correct: Tensor, labelled: Tensor, seen: int, started: float
    ) -> dict[str, float]:
        """The epoch's history record: each loss part's mean per sample, the accuracy and the
        training images per second, summed over the processes."""
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
        error, and no accuracy (:meth:`~transferlab.train.supervised.SupervisedLoss.scores`)."""
        self.check_data(data, "evaluation data")
        logits, labels = self._outputs(data, batch_size)
        return self.supervised.scores(logits, labels)

    # ------------------------------------------------------------- checkpoints
    def save(self, path: str | Path) -> None:
        """Write model, optimiser, loss terms, scheduler, RNG states, epoch, step and history to
        ``path`` (:func:`~transferlab.train.checkpoint.save_trainer`; under ``torchrun``: rank 0
        writes, the others wait for it)."""
        save_trainer(self, path)

    def load(self, path: str | Path) -> None:
        """Restore everything :meth:`save` wrote, so that :meth:`fit` continues the same run.

        Raises:
            CheckpointError: missing, corrupt, or written for another model.
        """
        load_trainer(self, path)


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
