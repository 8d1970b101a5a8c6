"""One signal policy for every command: SIGINT, SIGTERM and SIGHUP stop new work, keep and
write what finished, remove what was made, leave no worker behind and exit 128 + the signal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from harness import signals
from harness.pgserver import LocalServer

PROJECT = Path(__file__).resolve().parent.parent


class Command:
    """The console script in a process of its own, its stderr read line by line as it comes,
    with its own TMPDIR (so that what it leaves behind is seen)."""

    def __init__(self, tmp_path: Path, *args: str | Path, env: dict[str, str] | None = None):
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        command = [str(Path(sys.executable).parent / "racetape"), *map(str, args)]
        environment = {**os.environ, "TMPDIR": str(self.tmp), **(env or {})}
        # A session of its own: a signal to its process group reaches the command and its
        # workers, as a terminal's Ctrl-C or a CI runner's cancellation does (send_to_group).
        self.process = subprocess.Popen(
            command, cwd=tmp_path, env=environment, text=True, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 120.0) -> None:
        """Until a line of stderr matches ``pattern`` (the run got that far)."""
        give_up = time.monotonic() + timeout
        while not any(re.search(pattern, line) for line in self.lines):
            assert self.process.poll() is None, "".join(self.lines)
            assert time.monotonic() < give_up, f"no {pattern!r} in {self.lines}"
            time.sleep(0.05)

    def wait_for_handlers(self, timeout: float = 120.0) -> None:
        """Until the command took SIGTERM (racetape's dispatcher began: a signal before it,
        while Python starts and imports racetape, is the interpreter's)."""
        give_up = time.monotonic() + timeout
        status = Path(f"/proc/{self.process.pid}/status")
        while not int(re.findall(r"SigCgt:\s*([0-9a-f]+)", status.read_text())[0], 16) & (
            1 << (signal.SIGTERM - 1)
        ):
            assert self.process.poll() is None, "".join(self.lines)
            assert time.monotonic() < give_up, "main() never began"
            time.sleep(0.05)

    def children(self) -> list[int]:
        found = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in found.read_text().split()] if found.exists() else []

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def send_to_group(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def finish(self, timeout: float = 120.0) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code, "".join(self.lines)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state  # a zombie is gone, only not yet reaped


def _result(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _workers(command: Command) -> list[int]:
    return [
        pid
        for pid in command.children()
        if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text()
    ]


PROGRESS = r"racetape: [1-9][0-9]*/[0-9]+ runs"


def test_sigterm_to_a_two_worker_run_writes_the_finished_runs_and_exits_143(
    tmp_path: Path,
) -> None:
    run = Command(tmp_path, "run", "--workers", "2", "--runs", "100000", "--json", "r.json",
                  "--scenario", "late-progress", "--scenario", "many-tasks")  # fmt: skip
    run.wait_for(PROGRESS)
    workers = _workers(run)
    assert len(workers) == 2
    run.send(signal.SIGTERM)
    code, err = run.finish()
    assert code == 143, err
    assert "Traceback" not in err
    assert "racetape: stopped by SIGTERM; wrote the" in err
    doc = _result(tmp_path / "r.json")
    assert doc["totals"]["runs"] > 0
    for group in doc["groups"]:
        assert group["stopped"] == "interrupted"
        assert sum(b - a + 1 for a, b in group["runs_done"]) == group["runs"]
    assert not [w for w in workers if _alive(w)]
    assert list(run.tmp.iterdir()) == []  # every worker's SQLite folder removed


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_a_stopped_stress_job_writes_all_its_files_and_the_step_summary(
    tmp_path: Path, signum: int, code: int
) -> None:
    summary = tmp_path / "step-summary.md"
    stress = Command(tmp_path, "stress", "--adapter", "sqlite", "--runs", "100000", "--out",
                     "out", env={"GITHUB_STEP_SUMMARY": str(summary)})  # fmt: skip
    stress.wait_for(PROGRESS)
    stress.send(signum)
    returned, err = stress.finish()
    assert returned == code, err
    assert "Traceback" not in err
    doc = _result(tmp_path / "out" / "result.json")
    assert doc["totals"]["runs"] > 0
    assert "<testsuites" in (tmp_path / "out" / "junit.xml").read_text()
    assert summary.read_text() == (tmp_path / "out" / "summary.md").read_text()
    assert list(stress.tmp.iterdir()) == []


def test_a_second_signal_while_workers_drain_loses_nothing(tmp_path: Path) -> None:
    run = Command(tmp_path, "run", "--workers", "2", "--runs", "100000", "--json", "r.json",
                  "--scenario", "late-progress")  # fmt: skip
    run.wait_for(PROGRESS)
    run.send(signal.SIGINT)
    run.send(signal.SIGINT)  # what `timeout -s INT` delivers by itself
    code, err = run.finish()
    assert code == 130, err
    assert "Traceback" not in err
    assert _result(tmp_path / "r.json")["totals"]["runs"] > 0


def test_a_signal_before_any_run_still_writes_a_result(tmp_path: Path) -> None:
    run = Command(tmp_path, "run", "--runs", "100000", "--json", "r.json", "--scenario",
                  "late-progress")  # fmt: skip
    run.wait_for(r"racetape: [0-9]+ runs")
    run.send(signal.SIGTERM)
    code, err = run.finish()
    assert code == 143, err
    assert "Traceback" not in err
    assert _result(tmp_path / "r.json")["groups"][0]["stopped"] == "interrupted"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_interrupting_commands_stop_in_one_line(tmp_path: Path, signum: int) -> None:
    explore = Command(tmp_path, "explore", "--examples", "100000", "--no-db")
    explore.wait_for_handlers()
    time.sleep(1)  # somewhere inside Hypothesis's search; where does not matter
    explore.send(signum)
    code, err = explore.finish()
    assert code == 128 + signum, err
    assert "Traceback" not in err
    # "racetape: stopped by SIGHUP", or, where every Ctrl-C since was swallowed, the same line
    # saying it was ended at once (test_an_interrupting_command_that_swallows_every_interrupt...)
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"racetape: stopped by {signal.Signals(signum).name}"), err


def test_an_interrupted_matrix_writes_its_json_and_markdown(tmp_path: Path) -> None:
    matrix = Command(tmp_path, "matrix", "--seeds", "200", "--runs", "50", "--workers", "2",
                     "--json", "m.json", "--markdown", "m.md")  # fmt: skip
    matrix.wait_for(PROGRESS)
    matrix.send(signal.SIGTERM)
    code, err = matrix.finish()
    assert code == 143, err
    assert "Traceback" not in err
    assert _result(tmp_path / "m.json")["interrupted"] is True
    assert (tmp_path / "m.md").read_text().strip()


def test_a_killed_worker_is_a_lost_environment_not_a_lost_result(tmp_path: Path) -> None:
    run = Command(tmp_path, "run", "--workers", "2", "--runs", "100000", "--json", "r.json",
                  "--scenario", "late-progress")  # fmt: skip
    run.wait_for(PROGRESS)
    os.kill(_workers(run)[0], signal.SIGKILL)  # what the kernel's OOM killer does
    code, err = run.finish()
    assert code == 3, err
    assert "Traceback" not in err
    assert "racetape: worker lost: a worker process died" in err
    doc = _result(tmp_path / "r.json")
    assert doc["totals"]["runs"] > 0
    assert {g["stopped"] for g in doc["groups"]} == {"worker lost"}
    assert list(run.tmp.iterdir()) == []


def test_no_worker_outlives_a_parent_killed_outright(tmp_path: Path) -> None:
    run = Command(tmp_path, "run", "--workers", "2", "--runs", "100000", "--json", "r.json",
                  "--scenario", "late-progress")  # fmt: skip
    run.wait_for(PROGRESS)
    workers = _workers(run)
    run.send(signal.SIGKILL)
    run.finish()
    give_up = time.monotonic() + 30
    while any(_alive(w) for w in workers):
        assert time.monotonic() < give_up, "a worker outlived its parent"
        time.sleep(0.1)
    # Each worker removed its own SQLite folder; only the empty folder the parent made is left.
    (root,) = run.tmp.iterdir()
    assert list(root.iterdir()) == []


def test_a_ctrl_c_python_could_not_raise_where_it_came_is_raised_again() -> None:
    # Python cannot raise an exception out of a __del__ or a garbage collector's callback (as
    # Hypothesis installs one, so explore met this): it prints it and goes on, and a Ctrl-C
    # that came there was lost; the command even exited 0.
    class Interrupted:
        def __del__(self) -> None:
            raise KeyboardInterrupt

    def drop_one_and_wait() -> None:
        Interrupted()  # made and dropped: its __del__ runs here
        time.sleep(5)

    signals.install(cooperative=False)
    try:
        with pytest.raises(KeyboardInterrupt):
            drop_one_and_wait()
    finally:
        signals.uninstall()


SLOW = """
name = "slow"
description = "a run that takes minutes: many work steps before every progress write"
points = []

[runner]
progress = 1000
work = 1000
"""


def _until(found: Callable[[], object], command: Command, what: str) -> None:
    give_up = time.monotonic() + 60
    while not found():
        assert command.process.poll() is None, "".join(command.lines)
        assert time.monotonic() < give_up, f"never {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_runs_that_do_not_finish_within_the_bound_are_abandoned(
    tmp_path: Path, workers: str
) -> None:
    # A run of SLOW takes minutes: after a stop it is still going at the deadline (1 s after a
    # second signal), and is abandoned there: this process's run cancelled, or the worker
    # running it killed. What finished is written; nothing is left behind.
    (tmp_path / "slow.toml").write_text(SLOW)
    scenarios = ["--scenario", "slow.toml"] + (["--scenario", "late-progress"] * (workers == "2"))
    run = Command(tmp_path, "run", *scenarios, "--runs", "50", "--workers", workers,
                  "--settle-timeout", "600", "--json", "r.json")  # fmt: skip
    try:
        if workers == "1":  # its store is open: the slow run is under way
            _until(lambda: list(run.tmp.glob("racetape-sqlite-*/tasks.db")), run, "a store")
        else:  # both workers are in their runs, one of them the slow one
            _until(lambda: len(list(run.tmp.glob("racetape-workers-*/*/tasks.db"))) == 2, run,
                   "two stores")  # fmt: skip
        workers_seen = _workers(run)
        run.send(signal.SIGTERM)
        run.send(signal.SIGINT)  # a second stop: the bound is 1 s from here
        code, err = run.finish(timeout=30)
    finally:
        run.process.kill()  # gone already, unless nothing was abandoned
    assert code in (130, 143), err
    assert "Traceback" not in err
    assert re.search(r"racetape: stopped by SIG(TERM|INT), then SIG(INT|TERM); wrote the", err)
    groups = {g["scenario"]: g for g in _result(tmp_path / "r.json")["groups"]}
    assert groups["slow"]["runs"] == 0
    assert {g["stopped"] for g in groups.values()} == {"interrupted"}
    assert not [w for w in workers_seen if _alive(w)]
    assert list(run.tmp.iterdir()) == []


def _schemas(dsn: str) -> list[str]:
    async def names() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT c.relnamespace::regnamespace::text FROM pg_class c"
                " WHERE c.relname = 'tasks' AND c.relnamespace::regnamespace::text"
                " LIKE 'racetape%'"
            )
            return [row[0] for row in rows]
        finally:
            await conn.close()

    return asyncio.run(names())


@pytest.mark.postgres
def test_a_killed_workers_schemas_are_removed_by_the_command(
    own_server: LocalServer, tmp_path: Path
) -> None:
    (tmp_path / "slow.toml").write_text(SLOW)
    run = Command(tmp_path, "run", "--adapter", "postgres", "--pg-dsn", own_server.dsn,
                  "--scenario", "slow.toml", "--scenario", "late-progress", "--runs", "50",
                  "--workers", "2", "--settle-timeout", "600", "--json", "r.json")  # fmt: skip
    try:
        _until(lambda: len(_schemas(own_server.dsn)) == 2, run, "a schema for each worker")
        run.send(signal.SIGTERM)
        run.send(signal.SIGINT)  # the worker in the slow run is killed 1 s from here
        code, err = run.finish(timeout=30)
    finally:
        run.process.kill()
    assert code in (130, 143), err
    assert "Traceback" not in err
    assert _schemas(own_server.dsn) == []


def test_a_ctrl_c_during_a_run_whose_code_swallows_the_cancel_is_not_lost() -> None:
    # asyncio's Ctrl-C handler cancels the main task; code under test may swallow that.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    started = threading.Event()

    async def swallows() -> None:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            # Short sleeps: a signal that lands just before the loop blocks is only handled
            # once the loop wakes (asyncio's Runner sets no wakeup fd for it).
            for _ in range(1000):
                await asyncio.sleep(0.01)

    def ctrl_c() -> None:
        started.wait()
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    threading.Thread(target=ctrl_c, daemon=True).start()
    try:
        with asyncio.Runner() as runner, pytest.raises(KeyboardInterrupt):
            signals.run_interruptible(runner, swallows())
    finally:
        signal.signal(signal.SIGINT, before)


def test_an_interrupting_command_that_swallows_every_interrupt_still_ends_in_one_line(
    tmp_path: Path,
) -> None:
    # Code that takes every KeyboardInterrupt for its own: the stop's Ctrl-Cs never end it.
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import time\n"
        "from harness import signals\n"
        "signals.install(cooperative=False)\n"
        "ready = False\n"
        "while True:\n"
        "    try:\n"  # the stop may land in the print too: it is swallowed there as well
        "        if not ready:\n"
        "            print('ready', flush=True)\n"
        "            ready = True\n"
        "        time.sleep(0.05)\n"
        "    except KeyboardInterrupt:\n"
        "        pass\n"
    )
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=signals.ABANDON_SECONDS + 30)
    assert process.returncode == 143, err
    assert time.monotonic() - started < signals.ABANDON_SECONDS + 10
    assert err.strip().splitlines() == [
        "racetape: stopped by SIGTERM (the command had not stopped 8 s after it, and was ended"
        " at once: temporary folders or schemas may be left)"
    ]
