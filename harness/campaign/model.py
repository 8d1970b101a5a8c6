"""What a campaign runs and what each run leaves: a :class:`Group` (scenario, adapter, faults,
strategy), the :class:`Settings` every run shares, a :class:`RunRecord` (small and picklable: a
worker process sends it to the main process), and the exceptions that end runs without judging
them (:class:`EnvironmentFault`, :class:`BudgetCut`), each picklable so a worker can raise it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.adapters import RECONNECT_WITHIN
from harness.scenario import Scenario
from racetape._engine.jitter import JITTER_MAX_DELAY
from reftask.faults import Fault, fault_set_label


@dataclass(frozen=True)
class Group:
    scenario: Scenario
    adapter: str
    faults: frozenset[Fault]
    strategy: str

    @property
    def fault_label(self) -> str:
        return fault_set_label(self.faults)

    @property
    def label(self) -> str:
        return f"{self.scenario.name} / {self.adapter} / {self.fault_label} / {self.strategy}"

    @property
    def slug(self) -> str:
        return f"{self.scenario.name}--{self.adapter}--{self.fault_label}--{self.strategy}"


@dataclass(frozen=True)
class Settings:
    runs: int = 200
    seed: int = 0
    workers: int = 1
    shard: tuple[int, int] = (1, 1)
    budget: float | None = None
    settle_timeout: float = 10.0
    pct_depth: int = 3
    jitter_max_delay: float = JITTER_MAX_DELAY
    max_traces: int = 5
    traces_dir: Path = Path("reports/traces")
    pg_dsn: str | None = None
    reconnect_within: float = RECONNECT_WITHIN


@dataclass(frozen=True)
class RunRecord:
    """What the main process keeps of one run (small, picklable)."""

    index: int
    kinds: tuple[str, ...]
    hung: bool
    problem: str | None
    landings: tuple[str, ...]
    steps: int
    elapsed: float
    trace: dict[str, Any] | None = None
    note: str | None = None
    """Said of this run in the result's notes: it ran again after the database came back."""

    @property
    def stranded(self) -> bool:
        return bool(self.kinds)


class EnvironmentFault(Exception):
    """The environment failed mid-run, not the code under test (exit 3): the run it happened
    in is not counted (its outcome cannot be judged); the ``records`` finished before it are
    kept. ``adapter`` is the adapter whose groups it ends, or None for all of them. Picklable,
    so a worker process can raise it."""

    def __init__(self, message: str, adapter: str | None, records: list[RunRecord]) -> None:
        super().__init__(message, adapter, records)
        self.message, self.adapter, self.records = message, adapter, records

    def __str__(self) -> str:
        return self.message


class BudgetCut(Exception):
    """``--budget`` ran out in the middle of a run, which was cut there: it is not judged and
    not counted (neither a strand, nor hung, nor a success); the ``records`` finished before
    it are kept, and ``message`` goes into the result's notes. Picklable, so a worker
    process can raise it."""

    def __init__(self, message: str, records: list[RunRecord]) -> None:
        super().__init__(message, records)
        self.message, self.records = message, records

    def __str__(self) -> str:
        return self.message


class DatabaseLost(EnvironmentFault):
    """The database of ``adapter`` became unreachable."""


class WorkerLost(EnvironmentFault):
    """A worker process died (killed from outside, or by the kernel for want of memory): the
    pool is broken, and the runs it had in hand are lost with it."""


ALL_ADAPTERS = "*"
"""Where an :class:`EnvironmentFault` that ends every adapter's groups (its ``adapter`` is None)
is kept among those keyed by adapter."""
