"""An on-disk cache of tensors (generated data sets, pretrained source models).

Files live in ``$TRANSFERLAB_CACHE`` (default ``~/.cache/transferlab``).  Each entry stores its
parameters, a format version and a checksum; an entry that is unreadable, truncated, written by
another version or built from other parameters is rebuilt, with a warning, instead of being used.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import random
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

FORMAT_VERSION = 1


def cache_dir() -> Path:
    """The cache folder (created on demand): ``$TRANSFERLAB_CACHE`` or ``~/.cache/transferlab``."""
    root = os.environ.get("TRANSFERLAB_CACHE") or Path.home() / ".cache" / "transferlab"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _checksum(tensors: dict[str, Tensor]) -> int:
    crc = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)  # a 0-d tensor has no byte view
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"", crc)
    return crc


PACKAGE_ROOT = Path(__file__).parent


def _module_file(name: str, root: Path) -> Path | None:
    """The file of module ``name`` (``transferlab.x.y``) under ``root``, or ``None`` when it is
    not a module of the package (a name imported from a module, or another package)."""
    parts = name.split(".")
    if parts[0] != root.name:
        return None
    base = root.joinpath(*parts[1:])
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _imported(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    """Every module name that ``tree`` (the module ``name``) imports, anywhere in its body
    (functions included), relative imports resolved; ``from m import x`` yields ``m`` and
    ``m.x`` (``x`` may be a submodule)."""
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def _code_only(tree: ast.Module) -> str:
    """The module's code with docstrings dropped (``ast`` already drops comments and layout)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


@functools.lru_cache(maxsize=512)
def _parsed(path: Path, name: str, stamp: tuple[int, int]) -> tuple[frozenset[str], str]:
    """What module ``name`` at ``path`` imports, and a digest of its code without docstrings;
    computed once per version of the file (``stamp``: its modification time and size)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imports = frozenset(_imported(tree, name, path.name == "__init__.py"))
    return imports, hashlib.sha256(_code_only(tree).encode()).hexdigest()


def _module(path: Path, name: str) -> tuple[frozenset[str], str]:
    stat = path.stat()
    return _parsed(path, name, (stat.st_mtime_ns, stat.st_size))


def code_modules(*modules: str, root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """The package's modules that running ``modules`` executes: each of them, the packages
    above it (whose ``__init__`` runs first) and, transitively, every module of the package they
    import (``{name: file}``, sorted by name)."""
    found: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # the module and its parent packages
            sub = ".".join(parts[:i])
            path = _module_file(sub, root)
            if path is None or sub in found:
                continue
            found[sub] = path
            todo.extend(_module(path, sub)[0])
    return dict(sorted(found.items()))


def code_version(*modules: str, root: Path = PACKAGE_ROOT) -> str:
    """A digest of the code that running ``modules`` executes (:func:`code_modules`), without
    docstrings and comments: a result cached with it is recomputed when that code changes (so no
    cached number outlives its code), and kept when a docstring, a comment, a chapter or a module
    it never imports changes.

    Example: ``code_version("transferlab.bench.finetune")`` keys the fine-tuning benchmark.
    """
    if not modules:
        raise ValueError(
            "name the module(s) whose code the result depends on, e.g. code_version(__name__)"
        )
    h = hashlib.sha256()
    for name, path in code_modules(*modules, root=root).items():
        h.update(f"{name}\0{_module(path, name)[1]}\0".encode())
    return h.hexdigest()[:16]


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without disturbing the global random state of Python, NumPy and PyTorch (CPU
    and CUDA): whatever the block draws, the caller's next draw is the same as without it."""
    py, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(np_state)


def cache_path(name: str, params: dict) -> Path:
    """Where the entry ``name`` built with ``params`` is stored."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    return cache_dir() / f"{name}-{digest[:16]}.pt"


def cached(
    name: str, params: dict, build: Callable[[], dict[str, Tensor]], version: int = 0
) -> dict[str, Tensor]:
    """Return the tensors built by ``build()``, from the cache when a valid copy is there.

    Args:
        name: a short name for the entry (part of the file name).
        params: everything the result depends on (JSON-serialisable).
        build: computes the tensors when the cache has no valid copy.  It runs under
            :func:`preserved_rng`, so a cold cache leaves the caller's random state exactly as a
            warm one does (a result never depends on whether the cache was warm).
        version: bump it when ``build`` changes meaning; older entries then count as stale.

    Under ``torchrun``, rank 0 builds and writes the entry while the other ranks wait for it,
    then read it (every rank must call this in the same order).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return _cached(name, params, build, version)
    if dist.get_rank() == 0:
        tensors = _cached(name, params, build, version)
        dist.barrier()
        return tensors
    dist.barrier()
    return _cached(name, params, build, version)


def _cached(
    name: str, params: dict, build: Callable[[], dict[str, Tensor]], version: int = 0
) -> dict[str, Tensor]:
    """One process's part of :func:`cached`: read a valid entry, else build and write it."""
    path = cache_path(name, params)
    stamp = {
        "format": FORMAT_VERSION,
        "version": version,
        "params": json.dumps(params, sort_keys=True, default=str),
    }
    if path.exists():
        problem = None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            meta, tensors = blob["meta"], blob["tensors"]
            if any(meta.get(k) != v for k, v in stamp.items()):
                problem = "stale (built by another version or with other parameters)"
            elif meta.get("checksum") != _checksum(tensors):
                problem = "corrupt (checksum mismatch)"
        except Exception as exc:  # noqa: BLE001 (any unreadable file means: rebuild it)
            problem = f"corrupt ({type(exc).__name__}: {exc})"
        if problem is None:
            return tensors
        warnings.warn(f"cache entry {path} is {problem}; rebuilding it", stacklevel=2)
    with preserved_rng():
        tensors = build()
    meta = dict(stamp, checksum=_checksum(tensors))
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"meta": meta, "tensors": tensors}, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written entry behind
    return tensors
