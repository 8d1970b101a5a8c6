"""Per-group numbers every report shows: strands of runs, rate, exact bounds, the replay command.

One place computes them, so the Markdown, HTML, JUnit and compare outputs cannot disagree.
Bounds are exact Clopper-Pearson (:mod:`racetape._stats`): the one-sided 95% upper bound is the
number to quote beside "k of n" (0 of n gives about 3/n); the two-sided interval is for plots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.traces import replay_command
from racetape import _stats as stats
from reftask.faults import fault_set_label

GroupKey = tuple[str, str, tuple[str, ...], str]


def group_key(group: dict[str, Any]) -> GroupKey:
    """What makes a group itself: scenario, adapter, fault set, strategy."""
    return (group["scenario"], group["adapter"], tuple(sorted(group["faults"])), group["strategy"])


def group_label(group: dict[str, Any]) -> str:
    return (
        f"{group['scenario']} / {group['adapter']} / {fault_set_label(group['faults'])}"
        f" / {group['strategy']}"
    )


def percent(rate: float) -> str:
    """A rate as a percentage with three significant digits: 0.000117 -> '0.0117%'."""
    return f"{rate * 100:.3g}%"


@dataclass(frozen=True)
class GroupFigures:
    group: dict[str, Any]
    strands: int
    runs: int
    upper: float  # one-sided 95% upper bound on the strand rate
    low: float  # two-sided 95% interval
    high: float

    @property
    def label(self) -> str:
        return group_label(self.group)

    @property
    def rate(self) -> float | None:
        return self.strands / self.runs if self.runs else None

    @property
    def failed(self) -> bool:
        return bool(self.strands or self.group["hung"])

    @property
    def first_trace(self) -> str | None:
        traces: list[str] = self.group.get("traces") or []
        return traces[0] if traces else None

    @property
    def replay(self) -> str | None:
        """The command that replays the group's first failing run: its trace's, if a trace was
        kept; a raced pytest test's (``pytest --race-json``) its printed replay command."""
        if self.first_trace:
            return replay_command(self.first_trace)
        raced = self.group.get("pytest")
        replay = raced.get("replay") if isinstance(raced, dict) else None
        return replay if isinstance(replay, str) else None

    @property
    def kinds(self) -> str:
        return ", ".join(f"{k} {n}" for k, n in self.group["kinds"].items())

    @property
    def rate_text(self) -> str:
        return "-" if self.rate is None else percent(self.rate)

    @property
    def upper_text(self) -> str:
        return "-" if not self.runs else percent(self.upper)


def figures(group: dict[str, Any]) -> GroupFigures:
    k, n = int(group["strands"]), int(group["runs"])
    low, high = stats.interval(k, n)
    return GroupFigures(group, k, n, stats.upper_bound(k, n), low, high)
