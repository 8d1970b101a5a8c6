"""A Postgres that goes away mid-run is a finding about the environment, not a strand: the runs
that finished are kept and written, the output names the adapter that became unreachable, and
the command exits 3. The server stopped is one these tests start themselves, never the
machine's own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import asyncpg
import pytest

from harness.adapters import CONNECTION_LOST, Database
from harness.campaign import DatabaseLost, Group, Settings, run_indices, runs
from harness.pgserver import LocalServer, PostgresServer
from harness.scenario import resolve_scenario
from tests.test_signals import PROGRESS, Command

pytestmark = pytest.mark.postgres


def test_a_server_stopped_mid_run_keeps_the_finished_runs_and_exits_3(
    own_server: LocalServer, tmp_path: Path
) -> None:
    run = Command(tmp_path, "run", "--adapter", "postgres", "--pg-dsn", own_server.dsn,
                  "--scenario", "late-progress", "--runs", "99999", "--json", "r.json",
                  "--reconnect-within", "1")  # fmt: skip
    run.wait_for(PROGRESS)
    own_server.stop()
    code, err = run.finish()
    assert code == 3, err
    assert "Traceback" not in err
    assert "racetape: database lost: postgres became unreachable at " in err
    assert "; it did not answer again within 1s" in err
    doc = json.loads((tmp_path / "r.json").read_text())
    (group,) = doc["groups"]
    assert group["stopped"] == "database lost"
    assert group["runs"] > 0
    assert group["strands"] == 0  # the run the server died in is not judged, nor counted
    assert any("postgres became unreachable" in note for note in doc["notes"])
    assert list(run.tmp.iterdir()) == []


def test_with_workers_the_other_adapter_goes_on(own_server: LocalServer, tmp_path: Path) -> None:
    run = Command(tmp_path, "run", "--workers", "2", "--adapter", "postgres", "--adapter",
                  "sqlite", "--pg-dsn", own_server.dsn, "--scenario", "late-progress",
                  "--runs", "1500", "--json", "r.json", "--reconnect-within", "0")  # fmt: skip
    run.wait_for(PROGRESS)
    own_server.stop()
    code, err = run.finish()
    assert code == 3, err
    assert "Traceback" not in err
    groups = {g["adapter"]: g for g in json.loads((tmp_path / "r.json").read_text())["groups"]}
    assert groups["postgres"]["stopped"] == "database lost"
    assert groups["sqlite"]["runs"] == 1500
    assert groups["sqlite"]["stopped"] is None
    assert list(run.tmp.iterdir()) == []


def test_a_command_that_keeps_no_partial_result_says_so_in_one_line(
    own_server: LocalServer, tmp_path: Path
) -> None:
    matrix = Command(tmp_path, "matrix", "--adapter", "postgres", "--pg-dsn", own_server.dsn,
                     "--fault", "none", "--strategy", "random", "--seeds", "500", "--runs", "50",
                     "--json", "m.json", "--reconnect-within", "0")  # fmt: skip
    matrix.wait_for(PROGRESS)
    own_server.stop()
    code, err = matrix.finish()
    assert code == 3, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("racetape: database lost: postgres became")


def test_a_frozen_server_is_a_lost_database_not_a_hung_run(
    own_server: LocalServer, tmp_path: Path
) -> None:
    run = Command(tmp_path, "run", "--adapter", "postgres", "--pg-dsn", own_server.dsn,
                  "--scenario", "late-progress", "--runs", "99999", "--settle-timeout", "1",
                  "--json", "r.json", "--reconnect-within", "0")  # fmt: skip
    run.wait_for(PROGRESS)
    postmaster = int((own_server.data / "postmaster.pid").read_text().split()[0])
    found = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True)
    frozen = [postmaster, *map(int, found.stdout.split())]
    for pid in frozen:  # the server and its backends stop answering, connections stay open
        os.kill(pid, signal.SIGSTOP)
    try:
        run.wait_for("racetape: database lost: postgres became unreachable")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    code, err = run.finish()
    assert code == 3, err
    assert "no answer" in err
    (group,) = json.loads((tmp_path / "r.json").read_text())["groups"]
    assert group["hung"] == 0  # the run that hung on the frozen server is not judged
    assert group["stopped"] == "database lost"


@pytest.mark.parametrize("server_answers", [True, False])
async def test_a_driver_error_is_a_lost_database_only_if_the_server_then_fails_to_answer(
    postgres_server: PostgresServer, server_answers: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server stopped in the middle of a request can leave asyncpg's connection in a state it
    # reports in its own words, not as a connection error (seen in CI: the run then died with a
    # traceback and exit 1, the strand code). Whether such an error is the environment's or the
    # code's is asked of the server, with a fresh connection.
    async def broken_request(*args: object, **kwargs: object) -> object:
        raise asyncpg.InternalClientError(
            "cannot switch to state 12; another operation is in progress"
        )

    monkeypatch.setattr(runs, "execute", broken_request)
    dsn = (
        postgres_server.dsn
        if server_answers
        else f"postgresql://postgres@127.0.0.1:{_free_port()}/postgres"
    )
    db = Database("postgres", pg_dsn=dsn)

    async def a_store(faults: object = ()) -> object:
        return object()

    monkeypatch.setattr(db, "store", a_store)
    group = Group(resolve_scenario("late-progress"), "postgres", frozenset(), "random")
    run = run_indices(db, group, [0], Settings(reconnect_within=0), keep_traces=0)
    if server_answers:
        with pytest.raises(asyncpg.InternalClientError):
            await run
    else:
        with pytest.raises(DatabaseLost, match=r"postgres became unreachable .* in run 0"):
            await run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_server_that_comes_back_within_the_bound_loses_no_run(
    own_server: LocalServer, tmp_path: Path, workers: str
) -> None:
    run = Command(tmp_path, "run", "--adapter", "postgres", "--pg-dsn", own_server.dsn,
                  "--scenario", "late-progress", "--runs", "150", "--json", "r.json",
                  "--workers", workers, "--reconnect-within", "60")  # fmt: skip
    asyncio.run(_until_tasks_are_written(own_server.dsn, run))
    own_server.stop()
    run.wait_for(r"waiting up to 60s for it to answer again")
    own_server.start()
    code, err = run.finish()
    assert code == 0, err
    assert "Traceback" not in err
    assert re.search(r"racetape: postgres answered again [0-9.]+s later", err)
    doc = json.loads((tmp_path / "r.json").read_text())
    (group,) = doc["groups"]
    assert group["stopped"] is None
    assert group["runs"] == 150
    assert group["runs_done"] == [[0, 149]]  # each run once: the one in flight ran again
    again = [note for note in doc["notes"] if "ran again from its seed" in note]
    assert all("postgres became unreachable at " in note for note in again)
    if workers == "1":  # its one worker is always in a run; of two, both may be between runs
        assert re.search(r"answered again [0-9.]+s later; run [0-9]+ runs again", err)
        assert again
    assert list(run.tmp.iterdir()) == []


async def _until_tasks_are_written(dsn: str, command: Command) -> None:
    """Until the command's runs write tasks into a schema of theirs (its runs have begun)."""
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            assert command.process.poll() is None, "".join(command.lines)
            for (schema,) in await conn.fetch(
                "SELECT table_schema FROM information_schema.tables"
                " WHERE table_schema LIKE 'racetape%' AND table_name = 'tasks'"
            ):
                with contextlib.suppress(asyncpg.PostgresError):  # made, not yet committed
                    if await conn.fetchval(f"SELECT count(*) FROM {schema}.tasks") > 5:
                        return
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def test_a_restarted_server_is_seen_between_runs(own_server: LocalServer) -> None:
    # Between a run's write and its judgement: a write lost to a restart raises nothing in a
    # run whose code swallows a detached task's error; the run then looked stranded.
    db = Database("postgres", pg_dsn=own_server.dsn)
    await db.check_same_server()  # learns which server it is
    await db.check_same_server()
    own_server.stop()
    own_server.start()
    with pytest.raises(CONNECTION_LOST):
        await db.check_same_server()
    assert await db.answers_again(10) is not None
    await db.check_same_server()  # the server that answered again is the one expected now
    await db.close_stores()
