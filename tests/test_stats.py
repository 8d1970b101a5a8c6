"""Exact bounds against published values, and the before/after verdict."""

from __future__ import annotations

import pytest

from racetape._stats import compare, interval, upper_bound


def test_rule_of_three() -> None:
    # 0 of n: the one-sided 95% bound is 1 - 0.05**(1/n), about 3/n (Hanley & Lippman-Hand 1983).
    for n in (100, 1280, 2560):
        assert upper_bound(0, n) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)
        assert upper_bound(0, n) == pytest.approx(3 / n, rel=0.02)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Two-sided 95% exact (Clopper-Pearson) intervals for n = 10, as tabulated in the
        # standard references (e.g. Newcombe, Statistics in Medicine 1998, method 5).
        (0, 10, 0.0, 0.3085),
        (1, 10, 0.0025, 0.4450),
        (5, 10, 0.1871, 0.8129),
        (10, 10, 0.6915, 1.0),
    ],
)
def test_clopper_pearson_matches_published_values(k: int, n: int, low: float, high: float) -> None:
    got_low, got_high = interval(k, n)
    assert got_low == pytest.approx(low, abs=1e-4)
    assert got_high == pytest.approx(high, abs=1e-4)


def test_bounds_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="0 <= k <= n"):
        upper_bound(5, 3)


def test_verdicts() -> None:
    assert compare((40, 200), (0, 200)).verdict == "better"
    assert compare((0, 200), (40, 200)).verdict == "worse"
    # The seed's own evidence: 2 strands in 1280 loops, then 0 in 2560. Not significant.
    seed = compare((2, 1280), (0, 2560))
    assert seed.verdict == "no significant change"
    assert seed.p_value == pytest.approx(0.111, abs=1e-3)
    assert str(seed).startswith("2/1280 -> 0/2560: no significant change")
