"""Honest numbers for strand rates: exact binomial bounds and a before/after verdict.

* :func:`upper_bound`: the one-sided Clopper-Pearson upper bound on a rate, the bound a report
  quotes beside "k of n" (0 of n gives about 3/n at 95%, the rule of three).
* :func:`interval`: the two-sided Clopper-Pearson interval, for plots.
* :func:`compare`: better / worse / no significant change, by Fisher's exact test on the 2x2
  table (exact, so it stays valid for the small counts strands come in, where a z-test is not).

Standard library only (the plugin's jitter summary quotes these bounds, and a plain install has
no scipy): the beta quantiles by bisection on the regularized incomplete beta function (its
continued fraction, as in Numerical Recipes' ``betai``), the Fisher test by summing the
hypergeometric probabilities, as scipy does (two-sided: every table no likelier than the
observed one, with a relative tolerance of 1e-7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


def _continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz), converging for x < (a+1)/(a+b+2)."""
    tiny, eps = 1e-300, 1e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b): the beta(a, b) distribution's CDF."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return front * _continued_fraction(a, b, x) / a
    return 1.0 - front * _continued_fraction(b, a, 1.0 - x) / b


def _beta_ppf(q: float, a: float, b: float) -> float:
    """The q-quantile of beta(a, b), by bisection (the CDF is increasing): to float precision."""
    low, high = 0.0, 1.0
    for _ in range(200):
        mid = (low + high) / 2
        if mid in (low, high):
            break
        if _betainc(a, b, mid) < q:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _fisher_two_sided(k1: int, n1: int, k2: int, n2: int) -> float:
    """Fisher's exact test on [[k1, n1 - k1], [k2, n2 - k2]], two-sided (scipy's definition)."""
    total, column = n1 + n2, k1 + k2

    def log_pmf(x: int) -> float:  # hypergeometric: x of the column's column in row 1
        return _log_choose(column, x) + _log_choose(total - column, n1 - x) - _log_choose(total, n1)

    observed = log_pmf(k1)
    threshold = observed + math.log1p(1e-7)
    support = range(max(0, n1 - (total - column)), min(column, n1) + 1)
    p = math.fsum(math.exp(lp) for x in support if (lp := log_pmf(x)) <= threshold)
    return min(1.0, p)


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _check(k: int, n: int) -> None:
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")


def upper_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on the rate behind k successes in n trials."""
    _check(k, n)
    if n == 0 or k == n:
        return 1.0
    return _beta_ppf(confidence, k + 1, n - k)


def interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval for k successes in n trials."""
    _check(k, n)
    if n == 0:
        return 0.0, 1.0
    tail = (1 - confidence) / 2
    low = 0.0 if k == 0 else _beta_ppf(tail, k, n - k + 1)
    high = 1.0 if k == n else _beta_ppf(1 - tail, k + 1, n - k)
    return low, high


Verdict = Literal["better", "worse", "no significant change"]


@dataclass(frozen=True)
class Comparison:
    before: tuple[int, int]
    after: tuple[int, int]
    p_value: float
    verdict: Verdict

    def __str__(self) -> str:
        (k1, n1), (k2, n2) = self.before, self.after
        return f"{k1}/{n1} -> {k2}/{n2}: {self.verdict} (Fisher exact p={self.p_value:.3g})"


def compare(before: tuple[int, int], after: tuple[int, int], alpha: float = 0.05) -> Comparison:
    """Did the strand rate change between two runs? ``before`` and ``after`` are (strands, runs)."""
    (k1, n1), (k2, n2) = before, after
    _check(k1, n1)
    _check(k2, n2)
    if n1 == 0 or n2 == 0:
        return Comparison(before, after, 1.0, "no significant change")
    p_value = _fisher_two_sided(k1, n1, k2, n2)
    verdict: Verdict = "no significant change"
    if p_value < alpha:
        verdict = "better" if k2 / n2 < k1 / n1 else "worse"
    return Comparison(before, after, float(p_value), verdict)
