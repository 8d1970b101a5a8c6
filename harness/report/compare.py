"""Before and after: each group's strands side by side, with a verdict from Fisher's exact test.

Groups pair by scenario, adapter, fault set and strategy. Groups left over on both sides then
pair by scenario, adapter and strategy when that leaves exactly one on each side: that is the
before/after of a fix as racetape models it (the fault switched on, then off), and the table
shows both fault sets. A group found on one side only is listed, without a verdict.

The CI gate: :attr:`Comparison.worse` is true when any pair got significantly worse (two-sided
Fisher exact test at 95%; ``racetape._stats.compare``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from harness.report.markdown import cell
from harness.report.summary import group_key, percent
from harness.results import ResultMismatch
from racetape import _stats as stats
from reftask.faults import fault_set_label


@dataclass(frozen=True)
class Pair:
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    result: stats.Comparison | None  # None when one side is missing

    @property
    def any_side(self) -> dict[str, Any]:
        side = self.before or self.after
        assert side is not None
        return side

    @property
    def faults(self) -> str:
        before = fault_set_label(self.before["faults"]) if self.before else "-"
        after = fault_set_label(self.after["faults"]) if self.after else "-"
        return before if before == after else f"{before} -> {after}"

    @property
    def counts(self) -> str:
        """``2/1280 -> 0/2560``."""

        def side(g: dict[str, Any] | None) -> str:
            return "-" if g is None else f"{g['strands']}/{g['runs']}"

        return f"{side(self.before)} -> {side(self.after)}"

    @property
    def rates(self) -> str:
        def side(g: dict[str, Any] | None) -> str:
            return "-" if g is None or not g["runs"] else percent(g["strands"] / g["runs"])

        return f"{side(self.before)} -> {side(self.after)}"

    @property
    def verdict(self) -> str:
        if self.result is None:
            return "only before" if self.after is None else "only after"
        return self.result.verdict

    @property
    def p_value(self) -> str:
        if self.result is None:
            return "-"
        p = self.result.p_value
        return f"{p:.3g}" if p > 0 else "< 1e-300"  # below what a float holds, not zero


@dataclass(frozen=True)
class Comparison:
    before_name: str
    after_name: str
    pairs: list[Pair]

    @property
    def worse(self) -> bool:
        return any(p.verdict == "worse" for p in self.pairs)


def _pair(before: dict[str, Any] | None, after: dict[str, Any] | None) -> Pair:
    result = None
    if before is not None and after is not None:
        result = stats.compare(
            (before["strands"], before["runs"]), (after["strands"], after["runs"])
        )
    return Pair(before, after, result)


def compare_documents(
    before: dict[str, Any],
    after: dict[str, Any],
    *,
    before_name: str = "BEFORE",
    after_name: str = "AFTER",
) -> Comparison:
    """Pair the groups of two result documents and judge each pair; raises ResultMismatch if no
    group pairs at all (the two results are of different scenarios, adapters or strategies)."""
    left = {group_key(g): g for g in before["groups"]}
    right = {group_key(g): g for g in after["groups"]}
    pairs = [_pair(g, right[k]) for k, g in left.items() if k in right]
    only_left = {k: g for k, g in left.items() if k not in right}
    only_right = {k: g for k, g in right.items() if k not in left}
    # A fix modelled as a fault switched off: pair what is left by all but the faults.
    loose_left: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    loose_right: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for (scenario, adapter, _, strategy), g in only_left.items():
        loose_left[scenario, adapter, strategy].append(g)
    for (scenario, adapter, _, strategy), g in only_right.items():
        loose_right[scenario, adapter, strategy].append(g)
    for key, groups in loose_left.items():
        if len(groups) == 1 and len(loose_right.get(key, [])) == 1:
            pairs.append(_pair(groups[0], loose_right[key][0]))
            del only_left[group_key(groups[0])]
            del only_right[group_key(loose_right[key][0])]
    if not pairs:
        raise ResultMismatch(
            f"{after_name}: groups: none pairs with a group of {before_name} by scenario, adapter"
            " and strategy; compare two results of the same scenarios"
        )
    pairs += [_pair(g, None) for g in only_left.values()]
    pairs += [_pair(None, g) for g in only_right.values()]
    return Comparison(before_name, after_name, pairs)


def render_comparison(comparison: Comparison) -> str:
    """The comparison as Markdown (a pull-request comment)."""
    lines = [
        f"## racetape compare: `{cell(comparison.before_name)}` -> `{cell(comparison.after_name)}`",
        "",
        "| scenario | adapter | faults | strategy | strands / runs | rate | verdict | p |",
        "| --- | --- | --- | --- | --- | --- | --- | ---: |",
    ]
    for pair in comparison.pairs:
        g = pair.any_side
        verdict = f"**{pair.verdict}**" if pair.verdict in ("better", "worse") else pair.verdict
        lines.append(
            f"| {cell(g['scenario'])} | {g['adapter']} | {pair.faults} | {g['strategy']}"
            f" | {pair.counts} | {pair.rates} | {verdict} | {pair.p_value} |"
        )
    lines += [
        "",
        "Verdicts: two-sided Fisher exact test at 95% on strands / runs; `worse` fails the gate.",
    ]
    return "\n".join(lines) + "\n"
