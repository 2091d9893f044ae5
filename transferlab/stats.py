"""The one spread convention of the book: results over seeds are reported as the mean ± the
*sample* standard deviation (``ddof = 1``), and effects (differences between two methods on
the same seeds) with a 95 % Student-t confidence interval of their mean.

>>> s = summarize([0.70, 0.74, 0.72])
>>> round(s["mean"], 2), round(s["std"], 2), s["n"]
(0.72, 0.02, 3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import mean, stdev

from scipy.stats import t as student_t


def ci95_halfwidth(values: Sequence[float]) -> float:
    r"""Half-width of the 95 % t-interval of the mean: :math:`t_{0.975,\,n-1}\, s / \sqrt{n}`
    (``inf`` for a single value: one seed says nothing about the spread)."""
    n = len(values)
    if n < 2:
        return math.inf
    return float(student_t.ppf(0.975, n - 1)) * stdev(values) / math.sqrt(n)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std", "n", "ci95"}`` of per-seed values: ``std`` is the sample standard
    deviation (0 for one value), ``ci95`` the half-width of the 95 % interval of the mean."""
    if not values:
        raise ValueError("summarize needs at least one value")
    values = [float(v) for v in values]
    return {
        "mean": mean(values),
        "std": stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
        "ci95": ci95_halfwidth(values),
    }


def paired_effect(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """The effect ``a − b`` over paired seeds (same seed, same labelled images): the
    :func:`summarize` of the per-seed differences, plus ``low``/``high``, its 95 % interval."""
    if len(a) != len(b) or not a:
        raise ValueError(f"give one value per seed for both methods (got {len(a)} and {len(b)})")
    s = summarize([x - y for x, y in zip(a, b)])
    return {**s, "low": s["mean"] - s["ci95"], "high": s["mean"] + s["ci95"]}


def format_effect(effect: dict[str, float], scale: float = 100.0, unit: str = " points") -> str:
    """``"+12.3 points (95 % CI +6.1 to +18.5, 5 seeds)"``."""
    return (
        f"{scale * effect['mean']:+.1f}{unit} (95 % CI {scale * effect['low']:+.1f} to "
        f"{scale * effect['high']:+.1f}, {effect['n']} seeds)"
    )
