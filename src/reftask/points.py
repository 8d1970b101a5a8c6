"""reftask's control points: every name the reference code reaches, where, and what a cancel
landing there means.

The reference code reaches them through :func:`racetape.point` (on the event loop) and
:func:`racetape.point_blocking` (in a worker thread), as any code under racetape does. reftask's
own convention on top of racetape's contract: ``info`` always carries ``task_id`` (the cancel
windows of the reference harness tell a task's actors apart by it), and the detail keys
``kind``, ``status``, ``via`` and ``step`` tell apart two visits of one point in a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class PointSpec:
    name: str
    side: Literal["loop", "thread"]
    where: str
    window: str


POINTS: dict[str, PointSpec] = {
    spec.name: spec
    for spec in (
        PointSpec(
            "run.before_try",
            "loop",
            "TaskManager._run, its first await, before the try block opens",
            "cancel before the runner starts (seed bug 2)",
        ),
        PointSpec(
            "create.begin",
            "loop",
            "store.create_task, before the insert (takes the lock only where a new row needs one)",
            "task row not yet written",
        ),
        PointSpec(
            "create.done",
            "loop",
            "store.create_task, after the row committed",
            "task row written, submit not yet returned",
        ),
        PointSpec(
            "status.begin",
            "loop",
            "store.set_status, before the update takes the task's lock",
            "status write not started",
        ),
        PointSpec(
            "status.committed",
            "loop",
            "store.set_status, after the update committed",
            "status committed, not yet handed back",
        ),
        PointSpec(
            "write.enter",
            "thread",
            "Reporter worker thread, before it hands its event to the store",
            "worker-thread write not yet started",
        ),
        PointSpec(
            "append.begin",
            "loop",
            "store.append_event, before the append transaction takes the append lock",
            "append not yet started",
        ),
        PointSpec(
            "append.locked",
            "loop",
            "store.append_event, status and max(seq) read under the lock; insert and commit follow",
            "append in flight",
        ),
        PointSpec(
            "append.done",
            "loop",
            "store.append_event, the transaction committed (or the event was dropped)",
            "append committed, not yet handed back",
        ),
        PointSpec(
            "final.appended",
            "loop",
            "TaskManager, after the final event is on the tape",
            "task finished",
        ),
        PointSpec(
            "cancel.delivered",
            "loop",
            "TaskManager.cancel, right after the task was cancelled or its token set",
            "cancel delivered, the canceller not yet returned",
        ),
    )
}
