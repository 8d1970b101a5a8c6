"""Per-group numbers every report shows: strands of runs, rate, exact bounds, the replay command.

One place computes them, so the Markdown, HTML, JUnit and compare outputs cannot disagree.
Every report quotes one bound, the one-sided 95% upper bound on a group's strand rate, exact
(Clopper-Pearson, :mod:`racetape._stats`), and defines it in the words of :data:`BOUND_DEFINITION`
(the table's column and the HTML plot show the same number).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.oracle import strand_sentence
from harness.traces import replay_command
from racetape import _stats as stats
from reftask.faults import fault_set_label

GroupKey = tuple[str, str, tuple[str, ...], str]

BOUND_NAME = "95% upper bound"
BOUND_DEFINITION = (
    "95% upper bound: the highest strand rate at which as few strands as seen still have a 5%"
    " chance (one-sided, exact binomial: Clopper-Pearson); 0 strands in n runs bounds the rate"
    " at about 3/n."
)


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
    upper: float  # the one-sided 95% upper bound on the strand rate (BOUND_DEFINITION)

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
    return GroupFigures(group, k, n, stats.upper_bound(k, n))


def kinds_found(groups: list[GroupFigures]) -> list[tuple[str, str]]:
    """Each strand kind any group found, once, with its sentence (kinds in order of first
    appearance; a kind with no sentence, a raced test's ``failed``, is left out)."""
    seen: dict[str, str] = {}
    for g in groups:
        for kind in g.group["kinds"]:
            sentence = strand_sentence(kind)
            if sentence is not None:
                seen.setdefault(kind, sentence)
    return list(seen.items())
