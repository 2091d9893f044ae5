"""The pretraining recipe of the course's source models, trained once and cached on disk
(``$TRANSFERLAB_CACHE``).

Every chapter, lab and test that needs "the source model" calls :func:`pretrained_source`, so a
book build or test session pretrains each source once instead of once per notebook.  (A recipe
runs the Trainer, so it lives beside the benchmarks, not in :mod:`transferlab.models`.)
"""

from __future__ import annotations

import torch

from transferlab.bench.common import one_thread
from transferlab.cache import cached, code_version
from transferlab.data import TensorSplit, fonts, load_domain
from transferlab.models.cnn import SmallCNN
from transferlab.train import Trainer, seed_everything
from transferlab.train.device import arithmetic

#: Bump when the pretraining recipe changes (cached models then count as stale).  Version 2:
#: pretrained on one CPU thread always (version 1 used the calling process's thread count, so a
#: source depended on whichever test, page or benchmark happened to compute it first).
RECIPE_VERSION = 2


def pretrained_source(
    domain: str = "fonts",
    seed: int = 0,
    epochs: int = 5,
    lr: float = 1e-3,
    device: str = "auto",
    random_labels: bool = False,
    n_train: int | None = None,
) -> SmallCNN:
    """A :class:`~transferlab.models.cnn.SmallCNN` trained on ``domain``'s train split (Adam, batch
    64), from the cache when available.  Returned on the CPU, in train mode; the same arguments give
    the same model.  On a CPU it is trained on one thread, whatever ``OMP_NUM_THREADS`` says, so the
    cached model is the same whether a test, a page or a benchmark's worker computes it first.

    Args:
        domain: an offline source domain (``"fonts"``, ``"letters"``).
        seed: seeds the weights' initialisation, the rendering and the batch order.
        random_labels: train on labels drawn at random for every image (a *harmful* source,
            page ``book/negative.md``).
        n_train: use only the first ``n_train`` training images (default: all).
    """
    chars = {"fonts": fonts.DIGITS, "letters": fonts.LETTERS}
    if domain not in chars:
        raise ValueError(
            f"no pretraining recipe for domain {domain!r}; choose one of {sorted(chars)}"
        )
    config = {"num_classes": len(chars[domain]), "in_channels": 1}
    params = {
        "domain": domain,
        "seed": seed,
        "epochs": epochs,
        "lr": lr,
        "config": config,
        "code": code_version(__name__),
        "arithmetic": arithmetic(device=device),
    }
    if random_labels:
        params["random_labels"] = True
    if n_train is not None:
        params["n_train"] = n_train

    def build():
        train = load_domain(domain, seed=seed).train
        if n_train is not None:
            train = train.subset(torch.arange(min(n_train, len(train))))
        if random_labels:
            g = torch.Generator().manual_seed(10_000 + seed)
            train = TensorSplit(
                train.x, torch.randint(config["num_classes"], (len(train),), generator=g)
            )
        seed_everything(seed)
        model = SmallCNN(**config)
        with one_thread():
            Trainer(model, cpu_amp=True, lr=lr, seed=seed, device=device).fit(train, epochs=epochs)
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}

    model = SmallCNN(**config)
    model.load_state_dict(cached(f"source-{domain}", params, build, version=RECIPE_VERSION))
    return model
