"""Negative transfer on the digit domains (page ``book/negative.md``).

``transferlab bench negative`` and the chapter both call :func:`negative_benchmark`.

Sources of decreasing relatedness, each pretrained once per seed (cached):
``digits`` (font digits), ``letters`` (font letters, 26 classes: a new head), ``shuffled`` (2,000
font digits whose labels were drawn at random, trained for 40 epochs until the network has
memorised them: features that fit noise).  For each, fine-tune with k labelled handwritten
images per class (100 Adam steps, as page ``book/finetune.md``) and compare with training from
scratch on the same images *at the same learning rate*, ``LR``: the rate chosen on target-val
for scratch training on that page, so that a gap measures the source and not a difference of
recipes.  A naive user keeps the head of a source whose label
set looks the same (``digits``, ``shuffled``).

A bad *recipe* is not a bad source: ``digits_lr_high`` fine-tunes the good source with a
learning rate ``LR_HIGH`` far too high, and is compared with ``scratch_lr_high``, scratch
training at that same rate, so that the comparison isolates the source.

Every run records target-val and target-test; LogME and LEEP score each source on the same
k-shot subset its fine-tuning sees.  Effects are paired over seeds and reported with a 95 %
t-interval (:func:`transferlab.stats.paired_effect`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from scipy.stats import kendalltau

from transferlab.bench.common import k_label, one_thread, parse_k, run_grid
from transferlab.bench.finetune import LR as FINETUNE_LR
from transferlab.bench.finetune import SEEDS, finetune_curve
from transferlab.bench.results import BenchResult, records_from_grid
from transferlab.bench.sources import pretrained_source
from transferlab.cache import cached, code_version
from transferlab.data import load_domain
from transferlab.finetune import L2SP
from transferlab.models import SmallCNN, new_head
from transferlab.negative import leep, logme, source_predictions, transfer_gate
from transferlab.train import Trainer, seed_everything
from transferlab.train.device import arithmetic

SOURCES = ("digits", "letters", "shuffled")
#: the learning rate of the trap: far above every rate chosen on target-val
LR_HIGH = 3e-2
#: each curve: (source or None for scratch, keyword arguments of :func:`run`)
CURVES = {
    "scratch": (None, {}),
    "digits": ("digits", {}),
    "letters": ("letters", {}),
    "shuffled": ("shuffled", {}),
    "scratch_lr_high": (None, {"lr": LR_HIGH}),
    "digits_lr_high": ("digits", {"lr": LR_HIGH}),
}
#: curves that are runs of page ``book/finetune.md`` (same protocol, same rate): read from its
#: benchmark
SHARED = {"scratch": "scratch"}
#: the scratch run each curve is compared with (same labelled images; each at its chapter's
#: learning rate, and the two ``_lr_high`` curves at the same high one)
BASELINE = {
    "digits": "scratch",
    "letters": "scratch",
    "shuffled": "scratch",
    "digits_lr_high": "scratch_lr_high",
}
REMEDIES = {
    "shuffled+new_head": ("shuffled", {"how": "new_head"}),
    "shuffled+conv_only": ("shuffled", {"how": "conv_only"}),
    "shuffled+l2sp": ("shuffled", {"l2sp": 1e-2}),
    "letters+conv_only": ("letters", {"how": "conv_only"}),
    "letters+l2sp": ("letters", {"l2sp": 1e-2}),
}
#: sources whose gate (fine-tune, or fall back to scratch if target-val says so) is recorded
GATED = ("letters", "shuffled")
KS: tuple[int | None, ...] = (1, 3, 10, 30, None)
REMEDY_K = 3
STEPS, BATCH = 100, 64


#: the learning rate of every run but the trap's: scratch training's, chosen on target-val
LR = FINETUNE_LR["scratch"]


def source_model(name: str, seed: int) -> SmallCNN:
    """The pretrained (cached) model of a named source."""
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; choose one of {', '.join(SOURCES)}")
    if name == "letters":
        return pretrained_source("letters", seed=seed)
    if name == "shuffled":  # long enough on few images to memorise the random labels
        return pretrained_source("fonts", seed=seed, random_labels=True, n_train=2000, epochs=40)
    return pretrained_source("fonts", seed=seed)


def target_model(source: str | None, seed: int, how: str = "naive") -> SmallCNN:
    """The model to fine-tune: ``source=None`` for scratch; ``how``: ``naive`` (keep the head when
    the label count matches), ``new_head``, or ``conv_only`` (keep the two convolutions only)."""
    if how not in ("naive", "new_head", "conv_only"):
        raise ValueError(
            f"unknown fine-tuning variant {how!r}; choose naive, new_head or conv_only"
        )
    seed_everything(seed)
    if source is None:
        return SmallCNN()
    model = source_model(source, seed)
    if how == "conv_only":  # checked first: a 26-class letters source keeps its convolutions too
        fresh = SmallCNN()
        fresh.features[0].load_state_dict(model.features[0].state_dict())
        fresh.features[2].load_state_dict(model.features[2].state_dict())
        model = fresh
    elif how == "new_head" or model.head.out_features != 10:
        model = new_head(model, 10)
    return model


@one_thread()
def run(
    source: str | None,
    k: int | None,
    seed: int,
    how: str = "naive",
    lr: float = LR,
    l2sp: float = 0.0,
) -> dict:
    """Fine-tune (or train from scratch) on k labels per class: ``{"val": acc, "test": acc}``."""
    target = load_domain("handwritten")
    train = target.train.few_shot(k, seed=seed)
    model = target_model(source, seed, how)
    terms = [L2SP(model, alpha=l2sp)] if l2sp else []
    trainer = Trainer(
        model, cpu_amp=True, lr=lr, loss_terms=terms, batch_size=BATCH, seed=seed, progress=False
    )
    trainer.fit(train, max_steps=STEPS)
    return {
        "val": trainer.evaluate(target.val)["acc"],
        "test": trainer.evaluate(target.test)["acc"],
    }


def scores(source: str, seed: int, k: int | None = REMEDY_K) -> dict[str, float]:
    """LogME and LEEP of a source model on the k-shot labelled subset that fine-tuning with
    ``seed`` sees (``k=None``: the whole labelled training split)."""
    few = load_domain("handwritten").train.few_shot(k, seed=seed)
    feats, probs = source_predictions(source_model(source, seed), few.x)
    return {"logme": logme(feats, few.y), "leep": leep(probs, few.y)}


class Run(NamedTuple):
    """One run: a curve (a source and how it is transferred) at k labels per class."""

    curve: str
    k: str
    seed: int


def _job(name: str, k: str, seed: int) -> dict:
    source, kwargs = {**CURVES, **REMEDIES}[name]
    return run(source, parse_k(k), seed, **kwargs)


def _sources(seed: int) -> None:
    for name in SOURCES:
        source_model(name, seed)


def negative_benchmark(seeds: Sequence[int] = SEEDS, progress: bool | None = None) -> BenchResult:
    """Gain curves, scores, rank correlations, remedies and the gate; the runs are cached on disk.

    Returns:
        a :class:`~transferlab.bench.results.BenchResult` whose records name in ``method`` a curve
        of ``CURVES`` (every k), a remedy of ``REMEDIES`` (k = ``REMEDY_K``), or
        ``"<source>+gate"`` for ``GATED`` sources: the run that the val gate keeps between
        fine-tuning that source and scratch at k = ``REMEDY_K``
        (:func:`~transferlab.negative.transfer_gate`; its ``seconds`` are those of both runs).  The
        ``scratch`` and ``digits`` runs are the ``scratch`` and ``finetune`` runs of chapter
        "Pretrain and fine-tune", shared through its cache.  ``versus`` pairs each curve with the
        scratch run of ``BASELINE``: the effect a − b is the transfer gain, the negative-transfer
        gap is its opposite.  ``info`` holds ``scores[source][k]``, per-seed ``{"logme", "leep"}``
        on the k-shot subset (in ``seeds`` order), and ``kendall[k][score]``, τ between a score and
        the fine-tuned test accuracy at k over sources and seeds.
    """
    seeds = list(seeds)
    labels = [k_label(k) for k in KS]
    remedy_k = k_label(REMEDY_K)
    # scratch and the related source are the fine-tune chapter's runs, shared through its cache
    finetune = finetune_curve(ks=KS, seeds=seeds, progress=progress)
    jobs = [Run(name, k, s) for s in seeds for name in CURVES if name not in SHARED for k in labels]
    jobs += [Run(name, remedy_k, s) for s in seeds for name in REMEDIES]
    params = {
        "steps": STEPS,
        "lr": LR,
        "lr_high": LR_HIGH,
        "batch": BATCH,
        "curves": str(CURVES),
        "remedies": str(REMEDIES),
    }
    grid = run_grid(
        "bench-negative", params, jobs, _job, "negative transfer", progress, prepare=_sources
    )
    shared = {(r["method"], r["k"], r["seed"], r["split"]): r for r in finetune.records}
    for name, method in SHARED.items():
        for k in labels:
            for s in seeds:
                val, test = shared[(method, k, s, "val")], shared[(method, k, s, "test")]
                grid[(name, k, s)] = {
                    "val": val["acc"],
                    "test": test["acc"],
                    "seconds": test["seconds"],
                }
    runs = {(n, k, s): grid[(n, k, s)] for s in seeds for n in CURVES for k in labels}
    runs |= {(n, remedy_k, s): grid[(n, remedy_k, s)] for s in seeds for n in REMEDIES}
    for src in GATED:
        for s in seeds:
            transfer, scratch = runs[(src, remedy_k, s)], runs[("scratch", remedy_k, s)]
            kept = (
                transfer
                if transfer_gate(transfer["val"], scratch["val"]) == "transfer"
                else scratch
            )
            runs[(f"{src}+gate", remedy_k, s)] = {
                **kept,
                "seconds": transfer["seconds"] + scratch["seconds"],
            }

    def score_all() -> dict[str, torch.Tensor]:
        with one_thread():
            return {
                f"{src}/{k}/{s}": torch.tensor(
                    list(scores(src, s, parse_k(k)).values()), dtype=torch.float64
                )
                for src in SOURCES
                for k in labels
                for s in seeds
            }

    raw = cached(
        "bench-negative-scores",
        {"seeds": seeds, "ks": labels, "code": code_version(__name__), "arithmetic": arithmetic()},
        score_all,
    )
    source_scores = {
        src: {
            k: [dict(zip(("logme", "leep"), raw[f"{src}/{k}/{s}"].tolist())) for s in seeds]
            for k in labels
        }
        for src in SOURCES
    }
    kendall = {
        k: {
            m: float(
                kendalltau(
                    [source_scores[src][k][i][m] for src in SOURCES for i in range(len(seeds))],
                    [runs[(src, k, s)]["test"] for src in SOURCES for s in seeds],
                ).statistic
            )
            for m in ("logme", "leep")
        }
        for k in labels
    }
    return BenchResult(
        "negative",
        records_from_grid(runs, ("method", "k", "seed")),
        versus=list(BASELINE.items()),
        info={
            "steps": STEPS,
            "lr": LR,
            "lr_high": LR_HIGH,
            "batch": BATCH,
            "remedy_k": remedy_k,
            "scores": source_scores,
            "kendall": kendall,
        },
    )


def verdict(effect: dict) -> str:
    """``"gain"`` / ``"loss"`` when the 95 % interval of a transfer gain (acc(transfer) −
    acc(scratch), e.g. ``result.effect("shuffled", "scratch", "1")``) excludes 0, else
    ``"within noise"``."""
    if effect["low"] > 0:
        return "gain"
    if effect["high"] < 0:
        return "loss"
    return "within noise"


def summary(result: BenchResult) -> str:
    """Kendall's τ between each score and the fine-tuned accuracy, per k (for
    ``transferlab bench negative``)."""
    tau = {
        k: {m: round(t, 2) for m, t in per_k.items()} for k, per_k in result.info["kendall"].items()
    }
    return (
        "Kendall tau between score (on the k-shot subset) and fine-tuned test accuracy, per k: "
        f"{tau}"
    )
