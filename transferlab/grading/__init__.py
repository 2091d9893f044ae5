"""Helpers that lab checks call: compare a student's function with a reference on seeded random
inputs, with messages that say what differs (never a bare traceback); and ``private_module``,
the loader through which a test reaches these helpers and the reference functions without
trusting the copies that a submission shares (and may have monkeypatched)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import torch
from torch import Tensor


def private_module(name: str) -> ModuleType:
    """A private copy of the module ``name``: its code run anew into a module object that is not
    put in ``sys.modules``, so that it is not the one a notebook imported.

    Lab tests reach the check helpers and the reference functions through such copies, so a
    submission that replaces them in the shared modules
    (``transferlab.grading.compare_with_reference = lambda *a, **k: None``) changes nothing that
    the test uses. The copy is shallow: the modules that ``name`` imports are the shared ones.

    A test in a lab master imports this function
    (``from transferlab.grading import private_module as _private``), which is all nbval needs.
    A submission could replace this function as well, so ``transferlab.grading.labs.assign``
    replaces that import, in every test it generates, by this function's own source (without
    its docstring and annotations): each generated test defines its own loader.

    Raises:
        ModuleNotFoundError: there is no module ``name``.
    """
    import importlib.util  # imported here: the function's source alone is copied into tests

    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_tensor_close(
    got, expected: Tensor, what: str = "result", rtol: float = 1e-5, atol: float = 1e-6
) -> None:
    """Assert that ``got`` is a tensor with ``expected``'s shape, dtype and values.

    Raises:
        AssertionError: with a message naming the first mismatch (type, shape, dtype or values).
    """
    if not isinstance(got, Tensor):
        raise AssertionError(f"{what} should be a torch.Tensor, got {type(got).__name__}")  # noqa: TRY004 (a check fails)
    if got.shape != expected.shape:
        raise AssertionError(
            f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        )
    if got.dtype != expected.dtype:
        raise AssertionError(f"{what} has dtype {got.dtype}, expected {expected.dtype}")
    if not torch.allclose(got.detach().cpu(), expected.detach().cpu(), rtol=rtol, atol=atol):
        diff = (got.detach().cpu() - expected.detach().cpu()).abs().max().item()
        raise AssertionError(f"{what} differs from the reference by up to {diff:.3g}")


def compare_with_reference(
    student: Callable,
    reference: Callable,
    make_inputs: Callable[[torch.Generator], tuple],
    trials: int = 5,
    seed: int = 0,
    what: str | None = None,
    **tol,
) -> None:
    """Call ``student(*inputs)`` and ``reference(*inputs)`` on ``trials`` seeded random inputs
    from ``make_inputs(generator)`` and assert that the results agree (see
    :func:`assert_tensor_close`)."""
    g = torch.Generator().manual_seed(seed)
    name = what or getattr(student, "__name__", "your function")
    for t in range(trials):
        inputs = make_inputs(g)
        try:
            got = student(*inputs)
        except NotImplementedError as exc:
            raise AssertionError(
                f"{name} is not implemented yet" + (f" ({exc})" if str(exc) else "")
            ) from None
        assert_tensor_close(got, reference(*inputs), what=f"{name} (random input {t + 1})", **tol)


def check_gradient(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    expected: Callable[[Tensor, Tensor], Tensor],
    what: str = "the gradient",
    seed: int = 0,
    **tol,
) -> None:
    """Backpropagate a seeded random upstream gradient ``g`` through ``fn(x)`` and assert that
    ``x.grad == expected(x, g)``.

    Example (a gradient reversal layer must give ``-λ g``)::

        check_gradient(lambda t: grl(t, 0.5), torch.randn(4, 3), lambda x, g: -0.5 * g)
    """
    x = x.detach().clone().requires_grad_(True)
    out = fn(x)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        raise AssertionError(
            f"expected a tensor of shape {tuple(x.shape)}, got {getattr(out, 'shape', type(out))}"
        )
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    if out.requires_grad:
        out.backward(g)
    if x.grad is None:
        raise AssertionError(f"{what}: no gradient reached the input (did you detach it?)")
    assert_tensor_close(x.grad, expected(x.detach(), g), what=what, **tol)


def check_trains(
    train: Callable[[], float], threshold: float, seconds: float, what: str = "training"
) -> float:
    """Run ``train()`` (which returns an accuracy in [0, 1]) and assert that it reaches
    ``threshold`` within ``seconds``; returns the accuracy."""
    import time

    start = time.perf_counter()
    acc = float(train())
    took = time.perf_counter() - start
    if took > seconds:
        raise AssertionError(f"{what} took {took:.1f} s, more than the {seconds:.0f} s allowed")
    if acc < threshold:
        raise AssertionError(
            f"{what} reached {100 * acc:.1f} %, below the {100 * threshold:.0f} % required"
        )
    return acc


class Delegated(AssertionError):
    """Raised by :func:`own_work` when an answer calls, is, or subclasses a reference of the
    package instead of doing the work itself."""


def _globals_of(answer) -> list[dict]:
    """The global namespaces that ``answer`` (a function, or a class and its methods) reads."""
    found, seen = [], set()
    items = [answer]
    if isinstance(answer, type):
        items += [getattr(v, "__func__", v) for v in vars(answer).values()]
    for item in items:
        g = getattr(item, "__globals__", None)
        if isinstance(g, dict) and id(g) not in seen:
            seen.add(id(g))
            found.append(g)
    return found


def _captured(answer) -> list:
    """What ``answer`` (a function or a class) holds on to besides its globals: default
    arguments and closure cells, its methods' included."""
    items = [answer]
    if isinstance(answer, type):
        items += [getattr(v, "__func__", v) for v in vars(answer).values()]
    held = []
    for item in items:
        held += list(getattr(item, "__defaults__", None) or ())
        held += list((getattr(item, "__kwdefaults__", None) or {}).values())
        for cell in getattr(item, "__closure__", None) or ():
            try:
                held.append(cell.cell_contents)
            except ValueError:  # an empty cell
                pass
    return held


def own_work(answer, references, call: Callable[[], object], what: str | None = None):
    """Run ``call()`` (which uses the student's ``answer``) while every reference of the package
    named in ``references`` (``"module.attr"``, one or several) is replaced by a blocker, and
    fail if the answer is a reference, subclasses one, holds one, or calls one.

    The blockers replace the reference in its module (``transferlab.finetune.l2sp_penalty``, so
    that ``import transferlab.finetune as tf; tf.l2sp_penalty(...)`` is caught, and so is any
    function of the package that calls it) and under every name that the answer's global
    namespace binds to it (``from transferlab.finetune import l2sp_penalty as helper``). A
    blocker records that it was called even if the answer catches what it raises. Everything
    is restored afterwards.

    Returns:
        What ``call()`` returns.

    Raises:
        Delegated: (an ``AssertionError``) saying which reference the answer used.
    """
    import functools
    import importlib

    name = what or getattr(answer, "__name__", "your answer")
    refs = []
    for path in [references] if isinstance(references, str) else list(references):
        module_name, _, attr = path.rpartition(".")
        module = importlib.import_module(module_name)
        refs.append((path, module, attr, getattr(module, attr)))

    def message(path: str) -> str:
        return (
            f"{name} uses the package's {path}: the exercise is to write it yourself "
            "(the check runs your code with the package's version switched off)"
        )

    held = _captured(answer)
    for path, _, _, ref in refs:
        if answer is ref or any(h is ref for h in held):
            raise Delegated(message(path))
        if isinstance(answer, type) and isinstance(ref, type) and issubclass(answer, ref):
            raise Delegated(message(path))
        for h in held:
            if isinstance(h, functools.partial) and h.func is ref:
                raise Delegated(message(path))

    called: list[str] = []

    def blocker(path: str, ref):
        def blocked(*args, **kwargs):
            called.append(path)
            raise Delegated(message(path))

        if isinstance(ref, type):
            return type(f"blocked_{ref.__name__}", (), {"__new__": blocked})
        return blocked

    restore: list[tuple[dict | object, str, object]] = []
    try:
        for path, module, attr, ref in refs:
            stand_in = blocker(path, ref)
            restore.append((module, attr, ref))
            setattr(module, attr, stand_in)
            for g in _globals_of(answer):
                for key, value in list(g.items()):
                    if value is ref:
                        restore.append((g, key, value))
                        g[key] = stand_in
        result = call()
    finally:
        for where, key, value in reversed(restore):
            if isinstance(where, dict):
                where[key] = value
            else:
                setattr(where, key, value)
    if called:
        raise Delegated(message(called[0]))
    return result


__all__ = [
    "Delegated",
    "assert_tensor_close",
    "check_gradient",
    "check_trains",
    "compare_with_reference",
    "own_work",
    "private_module",
]
