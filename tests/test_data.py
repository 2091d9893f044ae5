import os
import pickle
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from transferlab.cache import cached
from transferlab.data import DataUnavailableError, TensorSplit, fonts, load_domain

SMALL = (200, 50, 50)


def test_fonts_same_seed_gives_identical_tensors(tmp_cache):
    a = load_domain("fonts", seed=3, sizes=SMALL)
    x, y, font = fonts.render(200, seed=3 * 1000)  # uncached, straight from the renderer
    assert (
        torch.equal(a.train.x, x)
        and torch.equal(a.train.y, y)
        and torch.equal(a.train.groups["font"], font)
    )
    b = load_domain("fonts", seed=4, sizes=SMALL)
    assert not torch.equal(a.train.x, b.train.x)


def test_fonts_have_the_optdigits_format_and_two_labels(tmp_cache):
    d = load_domain("fonts", sizes=SMALL)
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    x = d.train.x
    assert x.min() >= 0 and x.max() <= 1
    assert torch.equal(x * 16, (x * 16).round()), "17 grey levels: multiples of 1/16"
    assert set(d.train.y.unique().tolist()) == set(range(10))
    assert d.train.groups["font"].max() < len(fonts.font_files())
    assert len(fonts.font_files()) >= 20


def test_letters_are_a_26_class_domain(tmp_cache):
    d = load_domain("letters", sizes=SMALL)
    assert d.num_classes == 26 and d.train.y.max() < 26


def test_handwritten_splits_are_fixed_disjoint_and_complete():
    a, b = load_domain("handwritten"), load_domain("handwritten")
    assert torch.equal(a.test.x, b.test.x)
    sizes = [len(a.train), len(a.val), len(a.test)]
    assert sum(sizes) == 1797 and min(sizes) > 200
    rows = {tuple(r) for s in (a.train, a.val, a.test) for r in s.x.flatten(1).tolist()}
    assert len(rows) > 1700  # (a few images of load_digits are duplicates)
    assert a.train.x.max() <= 1 and a.input_shape == (1, 8, 8)


def test_few_shot_takes_k_per_class_reproducibly():
    t = load_domain("handwritten").train
    few = t.few_shot(3, seed=1)
    assert len(few) == 30 and torch.bincount(few.y).tolist() == [3] * 10
    assert torch.equal(few.x, t.few_shot(3, seed=1).x)
    assert not torch.equal(few.x, t.few_shot(3, seed=2).x)
    assert t.few_shot(None) is t
    with pytest.raises(ValueError, match="fewer than k"):
        t.few_shot(1000)


def test_tensor_split_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same first dimension"):
        TensorSplit(torch.zeros(3, 1, 8, 8), torch.zeros(2, dtype=torch.long))


def test_unknown_domain_names_the_choices():
    with pytest.raises(ValueError, match="fonts.*handwritten"):
        load_domain("imagenet")


def test_corrupt_cache_is_detected_and_rebuilt(tmp_cache):
    calls = []

    def build():
        calls.append(1)
        return {"a": torch.arange(5.0)}

    first = cached("thing", {"p": 1}, build)
    (path,) = list(tmp_cache.glob("thing-*.pt"))
    path.write_bytes(path.read_bytes()[:40])  # truncate the file
    with pytest.warns(UserWarning, match="corrupt"):
        again = cached("thing", {"p": 1}, build)
    assert torch.equal(first["a"], again["a"]) and len(calls) == 2
    assert torch.equal(cached("thing", {"p": 1}, build)["a"], first["a"]) and len(calls) == 2


def test_tampered_and_stale_cache_entries_are_rebuilt(tmp_cache):
    cached("thing", {"p": 1}, lambda: {"a": torch.ones(3)})
    (path,) = list(tmp_cache.glob("thing-*.pt"))
    blob = torch.load(path, weights_only=True)
    blob["tensors"]["a"][0] = 5.0  # silent bit rot: readable, wrong values
    torch.save(blob, path)
    with pytest.warns(UserWarning, match="checksum"):
        assert cached("thing", {"p": 1}, lambda: {"a": torch.ones(3)})["a"].tolist() == [1, 1, 1]
    with pytest.warns(UserWarning, match="stale"):
        out = cached("thing", {"p": 1}, lambda: {"a": torch.zeros(3)}, version=2)
    assert out["a"].tolist() == [0, 0, 0]


def test_fonts_cache_survives_a_corrupt_file(tmp_cache):
    a = load_domain("fonts", sizes=SMALL)
    for f in tmp_cache.glob("fonts-*.pt"):
        f.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning):
        b = load_domain("fonts", sizes=SMALL)
    assert torch.equal(a.train.x, b.train.x)


# ---------------------------------------------------------------- online domains
def test_mnist_loads_from_files_in_torchvision_layout(tmp_path, mnist_files):
    mnist_files(tmp_path, 40, 10)
    d = load_domain("mnist", root=tmp_path)
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert len(d.train) + len(d.val) == 40 and len(d.test) == 10
    assert 0 <= d.train.x.min() and d.train.x.max() <= 1
    assert d.test.y.tolist() == list(range(10))


def test_cifar10_loads_from_files_in_torchvision_layout(tmp_path, monkeypatch):
    from torchvision.datasets import cifar

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump(
                {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}, f
            )
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    # torchvision checks the official MD5 sums; our tiny files cannot match them.
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    d = load_domain("cifar10", root=tmp_path)
    assert d.input_shape == (3, 32, 32) and d.classes[0] == "c0"
    assert len(d.train) + len(d.val) == 20 and len(d.test) == 4


def test_missing_online_data_names_the_offline_domains(tmp_path):
    with pytest.raises(DataUnavailableError, match="download=True.*fonts.*handwritten"):
        load_domain("usps", root=tmp_path)


def test_download_without_network_fails_fast_with_the_offline_alternative(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataUnavailableError, match="download failed.*fonts"):
            load_domain("mnist", root=tmp_path, download=True)


class Job(NamedTuple):
    """A grid's job: named fields, one of them the seed."""

    method: str
    seed: int


def _run_with_numbers(method, seed):
    return {"val": 0.5, "test": 0.25, "trainable": 7, "acc:aux": 0.75, "trace": torch.arange(3.0)}


def test_a_grid_keeps_a_runs_extra_numbers_and_tensors(tmp_cache, monkeypatch):
    """Scalars (0-d tensors once cached) and traces survive the cache, read back by name."""
    from transferlab.bench.common import run_grid

    monkeypatch.setenv("TRANSFERLAB_WORKERS", "1")
    for _ in range(2):  # built, then read from the cache
        grid = run_grid("extras", {}, [Job("m", 0)], _run_with_numbers, "test", progress=False)
        r = grid[("m", 0)]  # a job is a tuple: a plain tuple finds it
        assert (r["val"], r["test"]) == (0.5, 0.25) and r["seconds"] >= 0
        assert (
            int(r["trainable"]) == 7
            and float(r["acc:aux"]) == 0.75
            and torch.equal(r["trace"], torch.arange(3.0))
        )
    assert len(list(tmp_cache.glob("extras-*.pt"))) == 1
    with pytest.raises(TypeError, match="NamedTuples with a field 'seed'"):
        run_grid("unnamed", {}, [("m", 0)], _run_with_numbers, "test", progress=False)


GRID_AFTER_THREADS = """
import sys, torch
from typing import NamedTuple
from transferlab.bench.common import run_grid

class Job(NamedTuple):
    method: str
    seed: int

def big(method, seed):
    return {"val": 0.5, "test": 0.5, "weights": torch.randn(400_000)}

torch.set_num_threads(2)  # the parent has run a parallel loop, as a notebook kernel has
a = torch.randn(1500, 1500); (a @ a).sum(); torch.randn(4_000_000).copy_(torch.randn(4_000_000))
grid = run_grid("big", {}, [Job("m", s) for s in range(6)], big, "big", progress=False)
print(len(grid), tuple(grid[("m", 0)]["weights"].shape))
"""


def test_forked_grid_workers_return_large_tensors_after_the_parent_used_threads(tmp_cache):
    """The workers are forked; one whose OpenMP team starts after the fork waits forever (seen
    in a chapter's kernel: the adaptation benchmark returns every model's weights)."""
    env = dict(os.environ, TRANSFERLAB_WORKERS="2", TRANSFERLAB_CACHE=str(tmp_cache))
    done = subprocess.run(
        [sys.executable, "-c", GRID_AFTER_THREADS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["6", "(400000,)"]


def _slow_for_seed_2(seed):
    if seed == 2:
        time.sleep(3)
    (Path(os.environ["TRANSFERLAB_CACHE"]) / f"prepared-{seed}").write_text(str(time.time()))


def _when(method, seed):
    (Path(os.environ["TRANSFERLAB_CACHE"]) / f"started-{method}-{seed}").write_text(
        str(time.time())
    )
    return {"val": float(seed), "test": float("ab".index(method))}


def _fails(seed):
    raise RuntimeError(f"no source for seed {seed}")


@pytest.mark.skipif(sys.platform != "linux", reason="grids fork their workers on Linux only")
def test_a_grid_starts_a_seeds_runs_as_soon_as_that_seed_is_prepared(tmp_cache, monkeypatch):
    """With 3 seeds on 2 workers, seed 0's runs do not wait for seed 2's preparation; results
    come back in the order of the jobs, and a failed preparation stops the grid with its error."""
    from transferlab.bench.common import run_grid

    monkeypatch.setenv("TRANSFERLAB_WORKERS", "2")
    jobs = [Job(m, s) for s in range(3) for m in ("a", "b")]
    grid = run_grid("overlap", {}, jobs, _when, "test", progress=False, prepare=_slow_for_seed_2)
    assert [(grid[job]["val"], grid[job]["test"]) for job in jobs] == [
        (float(s), float("ab".index(m))) for m, s in jobs
    ]
    seed_2_ready = float((tmp_cache / "prepared-2").read_text())  # 3 s after it started
    assert min(float((tmp_cache / f"started-{m}-0").read_text()) for m in "ab") < seed_2_ready
    with pytest.raises(RuntimeError, match="no source for seed"):
        run_grid("overlap-fails", {}, jobs, _when, "test", progress=False, prepare=_fails)
