"""A stop signal while a command starts (its imports, its workers' start, its Postgres schema)
ends it as one anywhere else does: one line, no traceback, nothing left behind, 128 + the
signal. Each test sends its signal at a moment it sees the command reach (a line on stderr, a
process's signal mask, a backend waiting on a lock), never at a guessed time."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from harness.pgserver import LocalServer
from reftask.stores.postgres import _SCHEMA_LOCK_KEY
from tests.conftest import local_server
from tests.test_signals import Command, _alive, _result, _workers

STOPS = [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]


@pytest.mark.parametrize(("signum", "code"), STOPS)
def test_a_signal_while_the_command_imports_is_one_line(
    tmp_path: Path, signum: int, code: int
) -> None:
    # Python prints a line on stderr as each import ends (PYTHONPROFILEIMPORTTIME, the
    # interpreter's own): once harness.scenario is in, the harness's command module is being
    # imported, a few hundred milliseconds more.
    run = Command(tmp_path, "run", "--runs", "100000", "--json", "r.json",
                  env={"PYTHONPROFILEIMPORTTIME": "1"})  # fmt: skip
    run.wait_for(r"\| +harness\.scenario$")
    run.send(signum)
    returned, err = run.finish()
    assert not re.search(r"\| +harness\.cli$", err, re.M), "the signal came after the imports"
    assert returned == code, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == f"racetape: stopped by {signal.Signals(signum).name}"
    assert list(run.tmp.iterdir()) == []


def _starting_workers(command: Command, count: int, timeout: float = 60.0) -> list[int]:
    """The command's worker processes, once ``count`` of them exist and none has yet taken
    SIGTERM for itself (they are still importing)."""
    give_up = time.monotonic() + timeout
    while True:
        assert command.process.poll() is None, "".join(command.lines)
        assert time.monotonic() < give_up, "no workers started"
        workers = _workers(command)
        if len(workers) == count:
            for pid in workers:
                status = Path(f"/proc/{pid}/status").read_text()
                caught = int(re.findall(r"SigCgt:\s*([0-9a-f]+)", status)[0], 16)
                assert not caught & (1 << (signal.SIGTERM - 1)), "a worker started already"
            return workers
        time.sleep(0.01)


@pytest.mark.parametrize(("signum", "code"), STOPS[1:])  # SIGINT: as SIGTERM, held alike
def test_a_signal_to_the_process_group_while_workers_start(
    tmp_path: Path, signum: int, code: int
) -> None:
    # A terminal's Ctrl-C, or a CI runner's SIGTERM, reaches every process of the group,
    # workers still importing included: they hold it until they can take it.
    run = Command(tmp_path, "run", "--workers", "2", "--runs", "100000", "--json", "r.json",
                  "--scenario", "late-progress")  # fmt: skip
    workers = _starting_workers(run, 2)
    run.send_to_group(signum)
    returned, err = run.finish()
    assert returned == code, err
    assert "Traceback" not in err
    assert f"racetape: stopped by {signal.Signals(signum).name}; wrote the" in err
    assert _result(tmp_path / "r.json")["groups"][0]["stopped"] == "interrupted"
    assert not [w for w in workers if _alive(w)]
    assert list(run.tmp.iterdir()) == []


@pytest.fixture(scope="module")  # no test here stops it: one server serves them all
def own_server() -> Iterator[LocalServer]:
    with local_server() as server:
        yield server


async def _fetch(dsn: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


@pytest.mark.postgres
@pytest.mark.parametrize("released", [True, False])
def test_a_signal_while_the_schema_is_made_leaves_no_schema(
    own_server: LocalServer, tmp_path: Path, released: bool
) -> None:
    # The store makes its schema under an advisory lock: holding it here makes the command wait
    # in schema creation, where the signal comes. Released, the schema is made and then
    # removed; held, the command gives up at its deadline (a second signal brings it near).
    async def scenario() -> tuple[int, str]:
        holder = await asyncpg.connect(own_server.dsn)
        await holder.execute("SELECT pg_advisory_lock($1)", _SCHEMA_LOCK_KEY)
        run = Command(tmp_path, "run", "--adapter", "postgres", "--pg-dsn", own_server.dsn,
                      "--runs", "100000", "--json", "r.json")  # fmt: skip
        give_up = time.monotonic() + 60
        waiting = "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'advisory'"
        while not await _fetch(own_server.dsn, waiting):
            assert run.process.poll() is None, "".join(run.lines)
            assert time.monotonic() < give_up, "the command never waited for the schema lock"
            await asyncio.sleep(0.02)
        run.send(signal.SIGTERM)
        if released:
            await holder.close()
        else:
            run.send(signal.SIGINT)  # another signal (one of the same kind may merge with it)
        returned, err = await asyncio.to_thread(run.finish)
        if not released:
            await holder.close()
        return returned, err

    code, err = asyncio.run(scenario())
    assert code == 143 if released else code in (130, 143), err
    assert "Traceback" not in err
    assert _result(tmp_path / "r.json")["groups"][0]["stopped"] == "interrupted"
    left = asyncio.run(
        _fetch(own_server.dsn, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'racetape%'")
    )
    assert left == []


def test_a_signal_while_a_silent_server_is_asked_stops_at_once(tmp_path: Path) -> None:
    # A server that takes the connection and never answers (a frozen one, a firewall's
    # half-open port) holds the start-up check for its 5 s timeout; a stop must not wait for
    # it, nor turn into its exit code 2.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        dsn = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/postgres"
        run = Command(tmp_path, "run", "--adapter", "postgres", "--pg-dsn", dsn, "--runs", "10",
                      "--json", "r.json")  # fmt: skip
        silent.settimeout(60)
        asked, _ = silent.accept()  # the command is in its check now
        with asked:
            started = time.monotonic()
            run.send(signal.SIGTERM)
            code, err = run.finish()
    assert code == 143, err
    assert time.monotonic() - started < 3
    assert "Traceback" not in err
    assert _result(tmp_path / "r.json")["groups"][0]["stopped"] == "interrupted"
