"""Negative transfer on the digit domains (chapter "Negative transfer").

``transferlab bench negative`` and the chapter both call :func:`negative_benchmark`.

Sources of decreasing relatedness, each pretrained once per seed (cached):
``digits`` (font digits), ``letters`` (font letters, 26 classes: a new head), ``shuffled`` (2,000
font digits whose labels were drawn at random, trained for 40 epochs until the network has
memorised them: features that fit noise), and ``digits_lr_high``
(the good source fine-tuned with a learning rate 30 times too high).  For each, fine-tune with
k labelled handwritten images per class (100 Adam steps, as chapter "Pretrain and fine-tune")
and compare with training from scratch on the same images.  A naive user keeps the head of a
source whose label set looks the same (``digits``, ``shuffled``).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import mean

import torch
from scipy.stats import kendalltau
from tqdm.auto import tqdm

from transferlab.bench.finetune import k_label
from transferlab.cache import cached, code_version
from transferlab.data import load_domain
from transferlab.finetune import L2SP
from transferlab.models import SmallCNN, new_head, pretrained_source
from transferlab.train import Trainer, seed_everything, steps_to_epochs
from transferlab.train.trainer import default_progress
from transferlab.transfer import leep, logme, negative_transfer_gap, source_predictions, transfer_gate

SOURCES = ("digits", "letters", "shuffled")
CURVES = ("digits", "letters", "shuffled", "digits_lr_high")
KS: tuple[int | None, ...] = (1, 3, 10, 30, None)
REMEDY_K = 3
STEPS, BATCH, LR, LR_HIGH, L2SP_ALPHA = 100, 64, 1e-3, 3e-2, 1e-2


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
    seed_everything(seed)
    if source is None:
        return SmallCNN()
    model = source_model(source, seed)
    seed_everything(seed)
    if how == "new_head" or model.head.out_features != 10:
        model = new_head(model, 10)
    elif how == "conv_only":
        fresh = SmallCNN()
        fresh.features[0].load_state_dict(model.features[0].state_dict())
        fresh.features[2].load_state_dict(model.features[2].state_dict())
        model = fresh
    elif how != "naive":
        raise ValueError(f"unknown fine-tuning variant {how!r}")
    return model


def run(source: str | None, k: int | None, seed: int, how: str = "naive", lr: float = LR, l2sp: float = 0.0) -> dict:
    """Fine-tune (or train from scratch) on k labels per class: ``{"val": acc, "test": acc}``."""
    target = load_domain("handwritten")
    train = target.train.few_shot(k, seed=seed)
    model = target_model(source, seed, how)
    terms = [L2SP(model, alpha=l2sp)] if l2sp else []
    trainer = Trainer(model, lr=lr, loss_terms=terms, batch_size=BATCH, seed=seed, progress=False)
    trainer.fit(train, epochs=steps_to_epochs(STEPS, len(train), BATCH))
    return {"val": trainer.evaluate(target.val)["acc"], "test": trainer.evaluate(target.test)["acc"]}


def scores(source: str, seed: int) -> dict[str, float]:
    """LogME and LEEP of a source model on the (labelled) handwritten training split."""
    target = load_domain("handwritten")
    feats, probs = source_predictions(source_model(source, seed), target.train.x)
    return {"logme": logme(feats, target.train.y), "leep": leep(probs, target.train.y)}


def negative_benchmark(seeds: Sequence[int] = (0, 1, 2), progress: bool | None = None) -> dict:
    """Gain curves, scores, rank correlations and remedies; cached on disk (see the module doc).

    Returns a dict with
    ``curves[name][k]``: per-seed ``{"val", "test"}`` accuracies (``name`` is ``scratch`` or one of
    ``CURVES``); ``gap[name][k]``: negative-transfer gap (mean, standard error) on test;
    ``scores[source]``: per-seed LogME and LEEP; ``kendall``: τ between each score and the
    fine-tuned test accuracy at k = ``REMEDY_K`` over sources and seeds; ``remedies``:
    per-seed accuracies of each remedy at k = ``REMEDY_K``; ``gate``: test accuracy of the
    gated choice per source.
    """
    seeds = list(seeds)
    show = default_progress() if progress is None else progress
    params = {"seeds": seeds, "ks": [k_label(k) for k in KS], "steps": STEPS, "lr": [LR, LR_HIGH],
              "l2sp": L2SP_ALPHA, "code": code_version()}

    def build() -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        jobs = [("scratch", None, {}), ("digits", "digits", {}), ("letters", "letters", {}),
                ("shuffled", "shuffled", {}), ("digits_lr_high", "digits", {"lr": LR_HIGH})]
        todo = [(name, src, kw, k, s) for name, src, kw in jobs for k in KS for s in seeds]
        remedies = [("shuffled+new_head", "shuffled", {"how": "new_head"}), ("shuffled+conv_only", "shuffled", {"how": "conv_only"}),
                    ("shuffled+l2sp", "shuffled", {"l2sp": L2SP_ALPHA}), ("letters+conv_only", "letters", {"how": "conv_only"}),
                    ("letters+l2sp", "letters", {"l2sp": L2SP_ALPHA})]
        todo += [(name, src, kw, REMEDY_K, s) for name, src, kw in remedies for s in seeds]
        for name, src, kw, k, s in tqdm(todo, desc="negative transfer", disable=not show):
            r = run(src, k, s, **kw)
            out[f"acc/{name}/{k_label(k)}/{s}"] = torch.tensor([r["val"], r["test"]], dtype=torch.float64)
        for src in SOURCES:
            for s in seeds:
                sc = scores(src, s)
                out[f"score/{src}/{s}"] = torch.tensor([sc["logme"], sc["leep"]], dtype=torch.float64)
        return out

    raw = cached("bench-negative", params, build)
    acc = {}
    for key, t in raw.items():
        kind, *rest = key.split("/")
        if kind == "acc":
            name, k, _ = rest
            acc.setdefault(name, {}).setdefault(k, []).append({"val": t[0].item(), "test": t[1].item()})
    curves = {n: v for n, v in acc.items() if "+" not in n}
    remedies = {n: v[k_label(REMEDY_K)] for n, v in acc.items() if "+" in n}
    sc = {src: [{"logme": raw[f"score/{src}/{s}"][0].item(), "leep": raw[f"score/{src}/{s}"][1].item()} for s in seeds]
          for src in SOURCES}
    gap = {n: {k: negative_transfer_gap([r["test"] for r in curves["scratch"][k]], [r["test"] for r in runs])
               for k, runs in per_k.items()} for n, per_k in curves.items() if n != "scratch"}
    kk = k_label(REMEDY_K)
    reached = [curves[src][kk][i]["test"] for src in SOURCES for i in range(len(seeds))]
    kendall = {m: float(kendalltau([sc[src][i][m] for src in SOURCES for i in range(len(seeds))], reached).statistic)
               for m in ("logme", "leep")}
    gate = {}
    for src in ("letters", "shuffled"):
        picks = [transfer_gate(t["val"], s_["val"]) for t, s_ in zip(curves[src][kk], curves["scratch"][kk])]
        gate[src] = [t["test"] if p == "transfer" else s_["test"] for p, t, s_ in zip(picks, curves[src][kk], curves["scratch"][kk])]
    return {"seeds": seeds, "ks": [k_label(k) for k in KS], "curves": curves, "gap": gap, "scores": sc,
            "kendall": kendall, "remedies": remedies, "gate": gate}


def crossing(result: dict, name: str) -> str:
    """Where the mean transfer gain of ``name`` changes sign along k, e.g.
    ``"between k=30 and k=all (becomes positive)"``, or ``"never (always negative)"``."""
    ks = result["ks"]
    gains = [-result["gap"][name][k][0] for k in ks]
    for (k0, g0), (k1, g1) in zip(zip(ks, gains), zip(ks[1:], gains[1:])):
        if (g0 > 0) != (g1 > 0):
            return f"between k={k0} and k={k1} (becomes {'positive' if g1 > 0 else 'negative'})"
    return f"never (always {'positive' if gains[0] > 0 else 'negative'})"


def format_table(result: dict) -> str:
    """Transfer gain (points, test) per source and k, and where it changes sign."""
    ks = result["ks"]
    lines = [f"{'source':<16}" + "".join(f"{'k=' + k:>10}" for k in ks) + "   gain changes sign", "-" * (16 + 10 * len(ks) + 42)]
    for name in result["gap"]:
        cells = "".join(f"{-100 * result['gap'][name][k][0]:>+10.1f}" for k in ks)
        lines.append(f"{name:<16}{cells}   {crossing(result, name)}")
    scratch = "".join(f"{100 * mean(r['test'] for r in result['curves']['scratch'][k]):>10.1f}" for k in ks)
    lines.append(f"{'(scratch acc.)':<16}{scratch}")
    return "\n".join(lines)
