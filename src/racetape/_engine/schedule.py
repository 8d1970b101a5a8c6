"""What a controlled run is made of, shared by the scheduler, its strategies and its modes:
the candidates a strategy chooses among, the decisions it made, the schedule a run ends with,
and the gates that hold planned actions back.

Nothing here decides anything: the decision loop is :mod:`racetape._engine.scheduler`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from racetape._control import PointInfo


def describe(point: str, info: PointInfo, keys: Sequence[str]) -> str:
    """A point and the parts of its info named in ``keys``: those that tell two visits of one
    point apart and do not change from run to run (an id drawn afresh each run must not be one:
    a recorded detail would never match again)."""
    parts = [f"{k}={info[k]}" for k in keys if k in info]
    return f"{point}({', '.join(parts)})" if parts else point


class Gate(Protocol):
    """Holds back one actor (a planned action: a cancel, a crash) until its window opens.

    The actor it guards is always a decision; it may go only while the gate is open (or, when
    nothing else can go, late); while it is open, no other actor may take a step the gate says
    it must precede.
    """

    @property
    def is_open(self) -> bool: ...

    async def wait_open(self) -> None:
        """Return once the gate is open (jitter mode waits here instead of gating)."""

    def guards(self, actor: str, point: str, info: PointInfo) -> bool:
        """True if ``actor`` at ``point`` is the action this gate holds back."""

    def observe(self, actor: str, point: str, info: PointInfo) -> None:
        """Called for every point any actor reaches, in order."""

    def must_precede(self, actor: str, point: str, info: PointInfo) -> bool:
        """True if the gated actor must go before ``actor`` may leave ``point``."""

    def wants_decision(self, actor: str, point: str, info: PointInfo) -> bool:
        """True if ``actor`` at ``point`` must be a decision for this gate (its window edges)."""

    def landing(self, live: set[str]) -> str:
        """Where the gated actor lands when it goes now (a window name, for coverage)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    actor: str
    detail: str  # the point it waits at, with what tells it apart (see describe)
    waiting_since: int


@dataclass(frozen=True, slots=True)
class Decision:
    step: int
    actor: str
    detail: str
    enabled: tuple[str, ...]
    landing: str | None = None  # set when a gated actor (a planned action) went
    index: int | None = None  # which candidate went (0: first come, first served); the loop's
    mid_turn: bool = False  # the loop's: between two callbacks of a turn, not at its start

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "step": self.step,
            "actor": self.actor,
            "detail": self.detail,
            "enabled": list(self.enabled),
        }
        if self.landing is not None:
            data["landing"] = self.landing
        if self.index is not None:
            data["index"] = self.index
            data["mid_turn"] = self.mid_turn
        return data


def chose(
    step: int, enabled: Sequence[Candidate], index: int, *, mid_turn: bool = False
) -> Decision:
    """The decision of taking ``enabled[index]`` at ``step`` (the loop's and its strategies')."""
    chosen = enabled[index]
    return Decision(
        step,
        chosen.actor,
        chosen.detail,
        tuple(c.actor for c in enabled),
        index=index,
        mid_turn=mid_turn,
    )


class Strategy(Protocol):
    name: str

    def choose(self, step: int, enabled: Sequence[Candidate]) -> Candidate: ...


class StrategyRefused(Exception):
    """A strategy cannot continue (a replay diverged from its recording); the message says why."""


Ending = Literal["settled", "hung", "deadlock", "diverged"]
"""How a run ended: settled (every actor done), hung (an actor ran past the settle timeout),
deadlock (actors left, none may go), diverged (the strategy refused: a replay left its
recording)."""


@dataclass
class Schedule:
    """What one controlled run did: its decisions, and how it ended."""

    decisions: list[Decision] = field(default_factory=list)
    outcome: Ending = "settled"
    problem: str | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # task actors that raised (see Tracker)

    @property
    def choices(self) -> list[str]:
        return [d.actor for d in self.decisions]
