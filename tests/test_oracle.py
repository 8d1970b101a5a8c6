"""The strand oracle: each kind is detected, and a sound tape raises none."""

from __future__ import annotations

import pytest

from harness.oracle import StrandKind, check_task
from reftask.models import EventRecord, TaskRecord, TaskStatus


def tape(
    *kinds: str, seqs: list[int] | None = None, final_status: str = "SUCCEEDED"
) -> list[EventRecord]:
    numbers = seqs or list(range(1, len(kinds) + 1))
    return [
        EventRecord("t", seq, kind, {"status": final_status} if kind == "final" else {}, 0.0)
        for seq, kind in zip(numbers, kinds, strict=True)
    ]


def row(status: str) -> TaskRecord:
    return TaskRecord("t", TaskStatus(status), 0.0, 0.0)


def kinds_of(status: str, events: list[EventRecord], started: bool = True) -> set[StrandKind]:
    return {v.kind for v in check_task(row(status), events, runner_started=started)}


def test_sound_tapes_have_no_strand() -> None:
    assert kinds_of("SUCCEEDED", tape("task_started", "progress", "final")) == set()
    assert kinds_of("CANCELLED", tape("final", final_status="CANCELLED"), started=False) == set()
    assert kinds_of("CANCELLED", tape("task_started", "final", final_status="CANCELLED")) == set()


@pytest.mark.parametrize(
    ("status", "events", "started", "expected"),
    [
        ("RUNNING", tape("task_started", "progress"), True, StrandKind.STUCK_NONTERMINAL),
        ("PENDING", [], False, StrandKind.STUCK_NONTERMINAL),
        ("SUCCEEDED", tape("task_started", "final", "progress"), True, StrandKind.FINAL_NOT_LAST),
        ("FAILED", tape("task_started", "progress"), True, StrandKind.MISSING_FINAL),
        ("SUCCEEDED", tape("task_started", "final", "final"), True, StrandKind.DUPLICATE_FINAL),
        ("CANCELLED", tape("task_started", "final"), True, StrandKind.STATUS_MISMATCH),
        ("SUCCEEDED", tape("task_started", "final", seqs=[1, 3]), True, StrandKind.SEQ_BROKEN),
        ("SUCCEEDED", tape("task_started", "final", seqs=[1, 1]), True, StrandKind.SEQ_BROKEN),
        ("SUCCEEDED", tape("progress", "final"), True, StrandKind.MISSING_STARTED),
        ("SUCCEEDED", tape("final"), True, StrandKind.MISSING_STARTED),
        ("SUCCEEDED", tape("progress", "task_started", "final"), True, StrandKind.MISSING_STARTED),
    ],
)
def test_each_kind_is_detected(
    status: str, events: list[EventRecord], started: bool, expected: StrandKind
) -> None:
    assert expected in kinds_of(status, events, started)


def test_a_final_only_tape_is_sound_when_the_runner_never_started() -> None:
    assert StrandKind.MISSING_STARTED not in kinds_of(
        "CANCELLED", tape("final", final_status="CANCELLED"), started=False
    )
