import os

import pytest

# Tests share the checkout's cache (as the book build does) unless told otherwise.
os.environ.setdefault("TRANSFERLAB_QUIET", "1")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty, private cache folder for tests that corrupt or inspect cache files."""
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# The chapters' benchmarks, computed once per test session (and cached on disk for the book).
@pytest.fixture(scope="session")
def finetune_bench():
    from transferlab.bench.finetune import finetune_curve

    return finetune_curve(progress=False)


@pytest.fixture(scope="session")
def adapt_bench():
    from transferlab.bench.adapt import adapt_benchmark

    return adapt_benchmark(progress=False)


@pytest.fixture(scope="session")
def negative_bench():
    from transferlab.bench.negative import negative_benchmark

    return negative_benchmark(progress=False)


@pytest.fixture(scope="session")
def multitask_bench():
    from transferlab.bench.multitask import multitask_benchmark

    return multitask_benchmark(progress=False)


@pytest.fixture(scope="session")
def distill_bench():
    from transferlab.bench.distill import distill_benchmark

    return distill_benchmark(progress=False)


@pytest.fixture(scope="session")
def peft_bench():
    from transferlab.bench.peft import peft_benchmark

    return peft_benchmark(progress=False)
