"""Learning curves of chapter "Pretrain and fine-tune": target accuracy against labelled target
examples per class, for training from scratch, a linear probe, full fine-tuning and fine-tuning
with L2-SP.  ``transferlab bench finetune`` and the chapter both call :func:`finetune_curve`.

Protocol: source = ``fonts`` (a model pretrained per seed, cached); target = ``handwritten``.
Source and target share their label set (digits 0–9), so the transfer methods keep the source's
head, except ``finetune_new_head``, which re-initialises it as one must when the label sets differ;
k labelled target images per class drawn with the seed; a fixed budget of optimiser steps
(no early stopping, so the test split is never used for selection); accuracy on target-test.
Hyper-parameters were chosen once on target-val (see the chapter).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import mean, pstdev

from tqdm.auto import tqdm

from transferlab.data import load_domain
from transferlab.finetune import L2SP, linear_probe
from transferlab.models import SmallCNN, new_head, pretrained_source
from transferlab.train import Trainer, seed_everything, steps_to_epochs
from transferlab.train.trainer import default_progress

METHODS = ("scratch", "linear_probe", "finetune", "finetune_new_head", "finetune_l2sp")
KS: tuple[int | None, ...] = (1, 3, 10, 30, None)  # None: every labelled target image
#: learning rate of each method (Adam), chosen on target-val (3 seeds, k = 1, 3, 30)
LR = {"scratch": 1e-3, "linear_probe": 1e-2, "finetune": 1e-3, "finetune_new_head": 1e-3, "finetune_l2sp": 1e-3}
L2SP_ALPHA = 1e-3
STEPS = 100
BATCH = 64


def k_label(k: int | None) -> str:
    return "all" if k is None else str(k)


def parse_k(text: str) -> int | None:
    """``"all"`` → ``None`` (every label), else a positive integer."""
    return None if text.strip() == "all" else int(text)


def run_one(
    method: str, k: int | None, seed: int, split: str = "test", steps: int = STEPS, l2sp_alpha: float = L2SP_ALPHA
) -> float:
    """Target accuracy of one run (``split``: ``"test"``, or ``"val"`` for tuning)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    target = load_domain("handwritten")
    train = target.train.few_shot(k, seed=seed)
    seed_everything(seed)
    terms = []
    if method == "scratch":
        model = SmallCNN(num_classes=target.num_classes)
    else:
        model = pretrained_source(seed=seed)
        if method == "finetune_new_head":
            model = new_head(model, target.num_classes)
        elif method == "linear_probe":
            linear_probe(model)
        elif method == "finetune_l2sp":
            terms.append(L2SP(model, alpha=l2sp_alpha))
    params = [p for p in model.parameters() if p.requires_grad]
    trainer = Trainer(model, lr=LR[method], params=params, loss_terms=terms, batch_size=BATCH, seed=seed, progress=False)
    trainer.fit(train, epochs=steps_to_epochs(steps, len(train), BATCH))
    return trainer.evaluate(getattr(target, split))["acc"]


def finetune_curve(
    ks: Sequence[int | None] = KS,
    seeds: Sequence[int] = (0, 1, 2),
    methods: Sequence[str] = METHODS,
    split: str = "test",
    progress: bool | None = None,
) -> dict:
    """Run every (method, k, seed) and summarise.

    Returns:
        a dict with keys ``ks`` (as strings, ``"all"`` for every label), ``seeds``, ``split``,
        ``runs`` (``runs[method][k]``: accuracy per seed) and ``summary``
        (``summary[method][k]``: ``{"mean": ..., "std": ...}``); accuracies in [0, 1].
    """
    runs: dict[str, dict[str, list[float]]] = {m: {k_label(k): [] for k in ks} for m in methods}
    jobs = [(m, k, s) for s in seeds for k in ks for m in methods]
    show = default_progress() if progress is None else progress
    for m, k, s in tqdm(jobs, desc="fine-tune curve", disable=not show):
        runs[m][k_label(k)].append(run_one(m, k, s, split))
    summary = {
        m: {k: {"mean": mean(v), "std": pstdev(v)} for k, v in per_k.items()} for m, per_k in runs.items()
    }
    return {"ks": [k_label(k) for k in ks], "seeds": list(seeds), "split": split, "runs": runs, "summary": summary}


def format_table(result: dict) -> str:
    """The summary as a plain-text table: accuracy mean ± std (%) per method and k."""
    ks = result["ks"]
    head = f"{'method':<18}" + "".join(f"{'k=' + k:>15}" for k in ks)
    lines = [head, "-" * len(head)]
    for m, per_k in result["summary"].items():
        cells = "".join(f"{100 * per_k[k]['mean']:>8.1f} ± {100 * per_k[k]['std']:<4.1f}" for k in ks)
        lines.append(f"{m:<18}{cells}")
    return "\n".join(lines)
