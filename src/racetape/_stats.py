"""Honest numbers for strand rates: exact binomial bounds and a before/after verdict.

* :func:`upper_bound`: the one-sided Clopper-Pearson upper bound on a rate, the bound a report
  quotes beside "k of n" (0 of n gives about 3/n at 95%, the rule of three).
* :func:`interval`: the two-sided Clopper-Pearson interval, for plots.
* :func:`compare`: better / worse / no significant change, by Fisher's exact test on the 2x2
  table (exact, so it stays valid for the small counts strands come in, where a z-test is not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import beta, fisher_exact


def _check(k: int, n: int) -> None:
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")


def upper_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on the rate behind k successes in n trials."""
    _check(k, n)
    if n == 0 or k == n:
        return 1.0
    return float(beta.ppf(confidence, k + 1, n - k))


def interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval for k successes in n trials."""
    _check(k, n)
    if n == 0:
        return 0.0, 1.0
    tail = (1 - confidence) / 2
    low = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - tail, k + 1, n - k))
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
    _, p_value = fisher_exact(np.array([[k1, n1 - k1], [k2, n2 - k2]]))
    verdict: Verdict = "no significant change"
    if p_value < alpha:
        verdict = "better" if k2 / n2 < k1 / n1 else "worse"
    return Comparison(before, after, float(p_value), verdict)
