import os

import pytest

# Tests share the checkout's cache (as the book build does) unless told otherwise.
os.environ.setdefault("TRANSFERLAB_QUIET", "1")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty, private cache folder for tests that corrupt or inspect cache files."""
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
