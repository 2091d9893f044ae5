"""How fast is the Trainer?  ``transferlab bench trainer``.

Times an epoch of :meth:`~transferlab.train.trainer.Trainer.fit` against two loops that do the
same work: the same model (:class:`~transferlab.models.cnn.SmallCNN`, the same initial weights),
the same shuffled batches (the same seeded permutation, the last partial batch dropped) and the
same optimiser (Adam, fused on CPU and CUDA, as the Trainer's default):

- ``hand_loop``: the ten-line loop of every PyTorch tutorial, over tensors already on the
  device (:func:`hand_loop`);
- ``dataloader``: the same loop over ``DataLoader(TensorDataset(x, y), shuffle=True)``, the
  naive way to batch in-memory data: one indexing and one ``torch.stack`` per sample
  (:func:`dataloader_loop`).

Data: the embedded font digits (``load_domain("fonts").train``: 10,000 8×8 images), batch 64.
Timings on a shared machine vary several-fold between runs, so the three are timed in one
process and interleaved: each repeat runs all three back to back, in a rotating order, and each
ratio is the median over repeats of that repeat's ratio, so that a slow moment hits all three
alike.  On the CPU every loop runs on one thread (as the benchmarks do: for a network this
small, one thread is about as fast as two).  All three do the benchmarks' arithmetic
(:func:`transferlab.bench.loops.arithmetic`): the model and each batch in the channels-last
layout, the forward pass under bf16 autocast where the benchmarks use it (a CPU with native bf16, or
CUDA), the loss in float32.
Not cached: a timing belongs to its machine and moment.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from tqdm.auto import tqdm

from transferlab.bench.common import one_thread
from transferlab.data import TensorSplit, load_domain
from transferlab.models import SmallCNN
from transferlab.train import Trainer, select_device
from transferlab.train.device import amp_dtype
from transferlab.train.trainer import default_progress

LOOPS = ("trainer", "hand_loop", "dataloader")
LABELS = {
    "trainer": "Trainer.fit",
    "hand_loop": "hand-written loop",
    "dataloader": "DataLoader(TensorDataset) loop",
}
LR = 1e-3
BATCH = 64
REPEATS = 7


def adam(model: nn.Module, device: torch.device) -> torch.optim.Adam:
    """The Trainer's default optimiser: Adam, fused (one kernel for all parameters) on CPU and
    CUDA."""
    return torch.optim.Adam(model.parameters(), lr=LR, fused=device.type in ("cpu", "cuda"))


def arithmetic(device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the benchmarks' runs on ``device`` (``Trainer(cpu_amp=True)``): bf16
    on a CPU with native bf16 and on CUDA, ``None`` (float32) elsewhere, and where CUDA would need
    fp16 with a gradient scaler (float32 then, for all three loops)."""
    dtype = amp_dtype(device, cpu=True)
    return None if dtype == torch.float16 else dtype


def _step_loss(model: nn.Module, xb: Tensor, yb: Tensor, dtype: torch.dtype | None) -> Tensor:
    """The loss of one batch: channels-last images, the forward pass under autocast in ``dtype``
    (none when ``None``), the cross-entropy in float32."""
    with torch.autocast(xb.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = model(xb.contiguous(memory_format=torch.channels_last))
    return F.cross_entropy(logits.float(), yb)


def hand_loop(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
    epochs: int = 1,
    dtype: torch.dtype | None = None,
) -> None:
    """The ten-line loop: images ``x`` ``(N, C, H, W)`` and labels ``y`` ``(N,)`` already on the
    model's device, one seeded permutation per epoch, the last partial batch dropped; the forward
    pass under autocast in ``dtype`` (``None``: float32)."""
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for start in range(0, len(x) - len(x) % batch_size, batch_size):
            idx = order[start : start + batch_size]
            loss = _step_loss(model, x[idx], y[idx], dtype)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def dataloader_loop(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
    epochs: int = 1,
    dtype: torch.dtype | None = None,
) -> None:
    """The same loop over a ``DataLoader(TensorDataset(x, y))`` that shuffles (the
    ``RandomSampler`` that ``shuffle=True`` makes) and drops the last partial batch, with ``x``,
    ``y`` on the CPU and each batch moved to the model's device.  The sampler holds ``generator``
    (a loader's own generator would first draw a worker seed from it), so the first epoch draws the
    same permutation as :func:`hand_loop`; later ones differ (the sampler draws once more per
    epoch)."""
    device = next(model.parameters()).device
    dataset = TensorDataset(x, y)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=RandomSampler(dataset, generator=generator),
        drop_last=True,
    )
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            loss = _step_loss(model, xb.to(device), yb.to(device), dtype)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def _timed(
    loop: str, train: TensorSplit, seed: int, batch_size: int, epochs: int, device: torch.device
) -> tuple[float, nn.Module]:
    """Seconds that ``loop`` takes for ``epochs`` epochs from the weights of ``seed``, and the
    model."""
    torch.manual_seed(seed)
    model = SmallCNN().to(device)
    generator = torch.Generator().manual_seed(seed)  # the Trainer seeds its batch generator alike
    dtype = arithmetic(device)
    run: Callable[[], object]
    if loop == "trainer":  # channels-last: the Trainer's default for a model with convolutions
        amp = dtype is not None
        trainer = Trainer(
            model,
            lr=LR,
            batch_size=batch_size,
            seed=seed,
            device=device,
            amp=amp,
            cpu_amp=amp,
            progress=False,
        )
        run = partial(trainer.fit, train, epochs=epochs)
    else:
        model.to(memory_format=torch.channels_last)
        loop_fn = hand_loop if loop == "hand_loop" else dataloader_loop
        x, y = (
            (train.x.to(device), train.y.to(device)) if loop == "hand_loop" else (train.x, train.y)
        )
        run = partial(
            loop_fn, model, x, y, adam(model, device), batch_size, generator, epochs, dtype
        )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, model


def _max_difference(a: nn.Module, b: nn.Module) -> float:
    return max(
        float((p - q).abs().max()) for p, q in zip(a.state_dict().values(), b.state_dict().values())
    )


def trainer_benchmark(
    repeats: int = REPEATS,
    epochs: int = 1,
    n_train: int | None = None,
    batch_size: int = BATCH,
    device: str | torch.device = "auto",
    progress: bool | None = None,
) -> dict:
    """Time ``epochs`` epochs of each loop of ``LOOPS``, ``repeats`` times, interleaved.

    Args:
        repeats: rounds of the three loops (report at least 7; 1 for a quick check).
        n_train: train on the first ``n_train`` font images only (default: all 10,000).
    Returns:
        a dict with ``bench`` (``"trainer"``); ``records``, one per loop and repeat (``method``:
        the loop, ``repeat``, ``seed``, ``epochs``, ``seconds``, ``seconds_per_epoch``);
        ``seconds_per_epoch``, the median of each loop; ``ratios``, ``trainer/hand_loop`` and
        ``dataloader/trainer``, each the median over repeats of the ratio within a repeat;
        ``max_weight_difference``, per loop the largest absolute difference between its final
        weights and the hand-written loop's, over every repeat (0 when the loops did the same
        work); and ``settings``.
    """
    if repeats < 1 or epochs < 1:
        raise ValueError(
            f"need at least one repeat and one epoch, got repeats={repeats}, epochs={epochs}"
        )
    dev = select_device(device)
    train = load_domain("fonts").train
    if n_train is not None:
        if n_train < batch_size:
            raise ValueError(
                f"n_train must hold at least one batch of {batch_size} images, got {n_train}"
            )
        train = train.subset(torch.arange(min(n_train, len(train))))
    show = default_progress() if progress is None else progress
    records: list[dict] = []
    difference = dict.fromkeys(("trainer", "dataloader"), 0.0)
    with one_thread() if dev.type == "cpu" else nullcontext():
        warm_up = train.subset(torch.arange(min(len(train), 4 * batch_size)))
        for loop in LOOPS:  # first calls build oneDNN/cuDNN kernels for each batch shape
            _timed(loop, warm_up, 0, batch_size, 1, dev)
        for r in tqdm(range(repeats), desc="trainer bench", disable=not show):
            order = LOOPS[r % len(LOOPS) :] + LOOPS[: r % len(LOOPS)]
            models = {}
            for loop in order:
                seconds, models[loop] = _timed(loop, train, r, batch_size, epochs, dev)
                records.append(
                    {
                        "method": loop,
                        "repeat": r,
                        "seed": r,
                        "epochs": epochs,
                        "seconds": seconds,
                        "seconds_per_epoch": seconds / epochs,
                    }
                )
            for loop in difference:
                difference[loop] = max(
                    difference[loop], _max_difference(models[loop], models["hand_loop"])
                )
    per_repeat = {(rec["method"], rec["repeat"]): rec["seconds"] for rec in records}

    def ratio(a: str, b: str) -> float:
        return statistics.median(per_repeat[(a, r)] / per_repeat[(b, r)] for r in range(repeats))

    return {
        "bench": "trainer",
        "records": records,
        "seconds_per_epoch": {
            loop: statistics.median(
                rec["seconds_per_epoch"] for rec in records if rec["method"] == loop
            )
            for loop in LOOPS
        },
        "ratios": {
            "trainer/hand_loop": ratio("trainer", "hand_loop"),
            "dataloader/trainer": ratio("dataloader", "trainer"),
        },
        "max_weight_difference": difference,
        "settings": {
            "n_train": len(train),
            "batch_size": batch_size,
            "epochs": epochs,
            "repeats": repeats,
            "device": str(dev),
            "threads": 1 if dev.type == "cpu" else torch.get_num_threads(),
            "torch": torch.__version__,
        },
    }


def format_timings(result: dict) -> str:
    """The timing table: median seconds per epoch of each loop, and the two ratios."""
    s = result["settings"]
    where = f"{s['device']}, {s['threads']} thread{'s' if s['threads'] != 1 else ''}"
    title = (
        f"time per epoch: SmallCNN on {s['n_train']:,} font digits (8×8), batch {s['batch_size']}, "
        f"Adam (fused); {where}; torch {s['torch']}"
    )
    lines = [title, f"{'loop':<32}{'s / epoch':>10}{'vs Trainer':>12}", "-" * 54]
    base = result["seconds_per_epoch"]["trainer"]
    for loop in LOOPS:
        t = result["seconds_per_epoch"][loop]
        lines.append(f"{LABELS[loop]:<32}{t:>10.3f}{t / base:>12.2f}")
    ratios = result["ratios"]
    lines += [
        "",
        f"Trainer / hand-written loop:   {ratios['trainer/hand_loop']:.2f}",
        f"DataLoader loop / Trainer:     {ratios['dataloader/trainer']:.2f}",
        f"(s / epoch: median over {s['repeats']} interleaved repeat{'s' * (s['repeats'] != 1)} of "
        f"{s['epochs']} epoch{'s' * (s['epochs'] != 1)}; "
        + "each ratio: median of the ratios within a repeat)",
    ]
    diff = result["max_weight_difference"]
    lines.append(
        "final weights vs the hand-written loop, max |Δw|: "
        + ", ".join(f"{LABELS[loop]} {v:.1e}" for loop, v in diff.items())
    )
    return "\n".join(lines)
