"""The package's structure: layers that import only downwards, and the map from chapters to code
that the README and the API page print."""

import ast
import re
from pathlib import Path

import pytest

from transferlab.bench.registry import BENCHMARKS

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "transferlab"

#: each top-level module or package of transferlab, by layer: a module may import its own layer
#: and the layers below, never one above (imports under ``if TYPE_CHECKING:`` are annotations)
LAYERS = [
    {"cache", "stats"},
    {"data"},
    {"models"},
    {"train"},
    {"finetune", "adapt", "negative", "multitask", "distill", "peft", "text"},
    {"bench"},
    {"viz", "grading"},
    {"cli"},
]


def _layer(name: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def _runtime_imports(tree: ast.Module):
    """Names of the transferlab modules a file imports when it runs."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_every_module_imports_only_its_own_layer_and_those_below():
    seen = {
        p.stem if p.suffix == ".py" and p.parent == PACKAGE else p.name
        for p in PACKAGE.iterdir()
        if not p.name.startswith("_") and (p.suffix == ".py" or p.is_dir())
    }
    assert seen - {"__pycache__"} == set().union(*LAYERS)
    upward = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if parts == ("__init__.py",):
            continue
        own = _layer(parts[0].removesuffix(".py"))
        for module in _runtime_imports(ast.parse(path.read_text())):
            if module.startswith("transferlab."):
                target = module.split(".")[1]
                if _layer(target) > own:
                    upward.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not upward, "imports that point upward:\n" + "\n".join(upward)


@pytest.mark.parametrize("page", ["README.md", "book/api.md"])
def test_the_map_from_chapters_to_code_names_files_that_exist(page):
    text = (ROOT / page).read_text()
    table = text[text.index("\n| chapter") + 1 :].split("\n\n", 1)[0]
    rows = [row for row in table.splitlines()[2:] if row.startswith("|")]
    assert len(rows) >= 8
    named = set()
    for row in rows:
        _, _chapter, package, bench, tests, _ = row.split("|")
        for module in re.findall(r"`([a-z_.]+)`", package):
            assert (PACKAGE / module.replace(".", "/")).with_suffix(".py").exists() or (
                PACKAGE / module.replace(".", "/")
            ).is_dir(), f"{page}: no module transferlab.{module}"
        for pattern in re.findall(r"`(test_[a-z_*]+\.py)`", tests):
            found = list((ROOT / "tests").glob(pattern))
            assert found, f"{page}: no test file {pattern}"
            named |= {p.name for p in found}
        named |= set(re.findall(r"`([a-z]+)`", bench)) & set(BENCHMARKS)
    assert set(BENCHMARKS) <= named  # every benchmark has its row


def test_every_package_the_code_imports_is_declared_in_pyproject():
    """A module of ``transferlab`` imports only the standard library, itself, and distributions
    that ``pyproject.toml`` names (as a dependency, or in the extra that installs that module's
    users: the book, grading, the labs)."""
    import sys
    from importlib.metadata import packages_distributions

    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [d for group in project["optional-dependencies"].values() for d in group]
    declared = [*project["dependencies"], *extras]
    names = {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in declared}
    providers = packages_distributions()
    missing = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top == "transferlab":
                    continue
                dists = {d.lower().replace("_", "-") for d in providers.get(top, [top])}
                if not dists & names:
                    missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"
