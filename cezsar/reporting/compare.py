"""Comparing two trained numbers over training seeds: a paired t-interval (docs/decisions.md, 'Training seeds').

Every sentence of the notebooks, the report and the README that says one number is above another is made here,
from the per-seed numbers of results.json: model k of one row and model k of the other share training seed k,
so the difference is taken seed by seed; its mean, the 95 % t-interval of that mean (n - 1 degrees of freedom),
and a verdict. When the interval holds 0 the sentence says "not distinguishable with N seeds"; with one seed there
is no interval and the sentence says so. No comparison is written by hand.
"""
from __future__ import annotations

import math
from typing import Sequence

from scipy import stats

LEVEL = 0.95  # the interval's confidence


def paired(a: Sequence[float], b: Sequence[float]) -> dict:
    """The paired difference a - b over seeds (a[k], b[k] from seed k): {"n", "diff" (mean), "low", "high" (95 %
    t-interval; None with one seed), "distinguishable" (the interval excludes 0)}. A scalar `b` (a number that
    does not depend on the training seed, e.g. the objects-only baseline) is repeated."""
    a = [float(x) for x in a]
    b = [float(x) for x in b] if isinstance(b, (list, tuple)) else [float(b)] * len(a)
    if len(a) != len(b) or not a:
        raise ValueError(f"paired comparison needs one value per seed on both sides: {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    if n < 2:
        return {"n": n, "diff": mean, "low": None, "high": None, "distinguishable": False}
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    return {"n": n, "diff": mean, "low": low, "high": high, "distinguishable": low > 0 or high < 0}


def sentence(name_a: str, a: Sequence[float], name_b: str, b: Sequence[float] | float, what: str = "top-1",
             scale: float = 100.0, unit: str = "points") -> str:
    """One generated comparison: "<a> vs <b> (<what>): <diff> <unit> (95 % CI low … high, paired over N seeds):
    <verdict>." Values are fractions, printed times `scale`."""
    r = paired(a, b if isinstance(b, (list, tuple)) else [b] * len(a))
    diff = f"{scale * r['diff']:+.1f} {unit}"
    seeds = f"{r['n']} seed{'s' if r['n'] != 1 else ''}"
    if r["low"] is None:
        return (f"{name_a} vs {name_b} ({what}): {diff} with {seeds}, no interval: not distinguishable with "
                f"{seeds}.")
    ci = f"95 % CI {scale * r['low']:+.1f} … {scale * r['high']:+.1f}, paired over {seeds}"
    if not r["distinguishable"]:
        verdict = f"not distinguishable with {seeds}"
    else:
        verdict = f"{name_a} is {'higher' if r['diff'] > 0 else 'lower'}"
    return f"{name_a} vs {name_b} ({what}): {diff} ({ci}): {verdict}."
