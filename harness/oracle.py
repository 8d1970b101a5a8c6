"""The strand oracle: what counts as a task left stranded.

Checked only once a run is quiescent (every worker thread finished, every detached write
drained); before that a tape may legitimately be incomplete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from reftask.models import TERMINAL_STATUS_VALUES, EventKind, EventRecord, TaskRecord


class StrandKind(StrEnum):
    STUCK_NONTERMINAL = "stuck-nonterminal"
    FINAL_NOT_LAST = "final-not-last"
    MISSING_FINAL = "missing-final"
    DUPLICATE_FINAL = "duplicate-final"
    STATUS_MISMATCH = "status-mismatch"
    SEQ_BROKEN = "seq-broken"
    MISSING_STARTED = "missing-started"


STRAND_SENTENCES: dict[StrandKind, str] = {
    StrandKind.STUCK_NONTERMINAL: (
        "the task's row was still PENDING or RUNNING after everything settled: nothing will"
        " ever finish it"
    ),
    StrandKind.FINAL_NOT_LAST: "a write (a progress event, say) committed after the final event",
    StrandKind.MISSING_FINAL: "the task's row ended terminal, but its tape has no final event",
    StrandKind.DUPLICATE_FINAL: "the tape has two final events: the task was finished twice",
    StrandKind.STATUS_MISMATCH: "the final event's status is not the status the row ended with",
    StrandKind.SEQ_BROKEN: "the tape's sequence numbers have a gap or a duplicate",
    StrandKind.MISSING_STARTED: (
        "a progress or final event was written with no task_started event before it"
    ),
}
"""What each strand kind means, as one sentence a reader of a report needs no code for: the one
table every report (HTML, Markdown) takes them from."""


def strand_sentence(kind: str) -> str | None:
    """The sentence for ``kind``, or None for a kind the oracle does not make (a raced pytest
    test's ``failed``)."""
    try:
        return STRAND_SENTENCES[StrandKind(kind)]
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Violation:
    kind: StrandKind
    task_id: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail} (task {self.task_id})"


def check_task(
    row: TaskRecord, tape: Sequence[EventRecord], *, runner_started: bool
) -> list[Violation]:
    """Every strand kind that holds for one settled task; empty when the task is sound.

    ``tape`` is in seq order. ``runner_started`` says whether the task's runner was entered: a
    task cancelled before its runner began may finish with a ``final``-only tape.
    """
    found: list[Violation] = []

    def add(kind: StrandKind, detail: str) -> None:
        found.append(Violation(kind, row.id, detail))

    kinds = [e.kind for e in tape]
    shown = ", ".join(f"{e.seq}:{e.kind}" for e in tape) or "empty"
    finals = [i for i, kind in enumerate(kinds) if kind == EventKind.FINAL]

    if row.status not in TERMINAL_STATUS_VALUES:
        add(StrandKind.STUCK_NONTERMINAL, f"row {row.status} with tape [{shown}]")
    elif not finals:
        add(StrandKind.MISSING_FINAL, f"row {row.status} with tape [{shown}]")
    if finals and any(k != EventKind.FINAL for k in kinds[finals[0] + 1 :]):
        add(StrandKind.FINAL_NOT_LAST, f"tape [{shown}]")
    if len(finals) > 1:
        add(StrandKind.DUPLICATE_FINAL, f"{len(finals)} finals on tape [{shown}]")
    if finals:
        final_status = tape[finals[-1]].body.get("status")
        if row.status in TERMINAL_STATUS_VALUES and final_status != row.status:
            add(StrandKind.STATUS_MISMATCH, f"final says {final_status}, row says {row.status}")
    seqs = [e.seq for e in tape]
    if seqs != list(range(1, len(seqs) + 1)):
        add(StrandKind.SEQ_BROKEN, f"seqs {seqs}")
    # Progress always needs task_started before it; final does once the runner was entered.
    needing = [kinds.index(EventKind.PROGRESS)] if EventKind.PROGRESS in kinds else []
    if finals and runner_started:
        needing.append(finals[0])
    if needing and EventKind.TASK_STARTED not in kinds[: min(needing)]:
        add(StrandKind.MISSING_STARTED, f"tape [{shown}]")
    return found
