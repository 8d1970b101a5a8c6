"""Control points: free without a controller, seen from the loop and from worker threads; reftask's
catalog names exactly the points its code reaches."""

from __future__ import annotations

import ast
import threading
from collections.abc import Awaitable
from pathlib import Path

import pytest

import reftask
from racetape import point, point_blocking
from racetape._control import PointInfo, current_controller, under_controller
from reftask.manager import TaskManager
from reftask.points import POINTS
from reftask.stores.base import SqlTaskStore
from tests.checks import one_progress, wait_for_final


class Recorder:
    """The smallest controller: notes each point, the side it was reached on, and lets it go."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, PointInfo]] = []
        self.loop_thread = threading.get_ident()

    async def _noted(self, point: str, info: PointInfo) -> None:
        self.seen.append((point, "loop", info))

    def reach(self, point: str, info: PointInfo) -> Awaitable[None]:
        return self._noted(point, info)

    def reach_blocking(self, point: str, info: PointInfo) -> None:
        side = "loop-thread" if threading.get_ident() == self.loop_thread else "thread"
        self.seen.append((point, side, info))


def test_without_controller_a_point_never_suspends() -> None:
    assert current_controller() is None
    reached = point("run.before_try", task_id="x")
    with pytest.raises(StopIteration):  # it finished in its first step: it never yielded
        reached.send(None)
    with under_controller(None):
        point_blocking("write.enter", task_id="x")  # returns: no controller to block in
    assert current_controller() is None


async def test_controller_sees_every_point_of_a_run_on_the_right_side(store: SqlTaskStore) -> None:
    recorder = Recorder()
    manager = TaskManager(store)
    with under_controller(recorder):
        task_id = await manager.submit(one_progress)
    await wait_for_final(manager, task_id, 10)
    names = [p for p, _, _ in recorder.seen]
    assert names[:3] == ["create.begin", "create.done", "run.before_try"]
    assert names[-1] == "final.appended"
    assert names.count("write.enter") == 2  # task_started and one progress
    for name, side, info in recorder.seen:
        assert side == POINTS[name].side, f"{name} reached on the {side}"
        assert info["task_id"] == task_id
    writes = [info["kind"] for p, _, info in recorder.seen if p == "write.enter"]
    assert writes == ["task_started", "progress"]
    locked = [info for p, _, info in recorder.seen if p == "append.locked"]
    assert all(isinstance(info["holds"], str) for info in locked)


async def test_controller_is_scoped_to_its_context(store: SqlTaskStore) -> None:
    recorder = Recorder()
    manager = TaskManager(store)
    with under_controller(recorder):
        pass
    task_id = await manager.submit(one_progress)
    await wait_for_final(manager, task_id, 10)
    assert recorder.seen == []


async def test_a_controller_can_raise_at_a_point(store: SqlTaskStore) -> None:
    class Refuses(Recorder):
        async def _noted(self, point: str, info: PointInfo) -> None:
            if point == "status.begin":
                raise LookupError("refused")

    manager = TaskManager(store)
    with under_controller(Refuses()), pytest.raises(LookupError):
        await manager.store.set_status("anything", reftask.TaskStatus.RUNNING)


def _point_names_in_source() -> set[str]:
    names: set[str] = set()
    for path in Path(reftask.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("point", "point_blocking")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value)
    return names


def test_the_point_catalog_is_exactly_the_points_the_code_reaches() -> None:
    assert _point_names_in_source() == set(POINTS)
