"""Finding a real Postgres: a DSN, a testcontainers container, or a self-started local server.

Order (the first that works wins):

1. ``RACETAPE_PG_DSN``: used as given; it must answer.
2. A testcontainers ``PostgresContainer``, where the ``containers`` extra is installed and a
   Docker engine answers.
3. A throwaway server started from the local PostgreSQL binaries (``initdb`` + ``pg_ctl``) in a
   temporary directory, as the ``postgres`` user when running as root (initdb refuses root),
   stopped and deleted on exit.

Otherwise :class:`PostgresUnavailable`, whose message says how to provide one.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from harness import signals
from reftask.dsn import redact_dsn

DSN_ENV = "RACETAPE_PG_DSN"


class PostgresUnavailable(RuntimeError):
    """No Postgres could be found or started; the message says what was tried and how to fix it."""


@dataclass(frozen=True)
class PostgresServer:
    dsn: str
    origin: str  # "env", "testcontainers" or "local-binaries"


def check_reachable(dsn: str, *, timeout: float = 5.0) -> None:
    """Raise PostgresUnavailable (one line) unless a connection to ``dsn`` succeeds. A stop
    signal (:mod:`harness.signals`) ends the wait at once, unanswered: a server that accepts
    but does not answer held a stopped command for the whole ``timeout``, and its exit code
    was then 2 (cannot reach), not the signal's; the command stops before any work."""

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=timeout)
        await conn.close()

    async def unless_stopped() -> None:
        asked = asyncio.ensure_future(probe())
        try:
            while not asked.done():
                if signals.stop_requested():
                    return
                await asyncio.wait({asked}, timeout=STOP_POLL)
            asked.result()
        finally:
            asked.cancel()

    try:
        asyncio.run(unless_stopped())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise PostgresUnavailable(f"cannot reach Postgres at {redact_dsn(dsn)}: {exc}") from exc


STOP_POLL = 0.05
"""How often :func:`check_reachable` looks for a stop while it waits."""


@contextlib.contextmanager
def provide_postgres() -> Iterator[PostgresServer]:
    """Yield a reachable Postgres, found or started in the documented order."""
    dsn = os.environ.get(DSN_ENV)
    if dsn:
        check_reachable(dsn)
        yield PostgresServer(dsn, "env")
        return
    with contextlib.ExitStack() as stack:
        server = _from_testcontainers(stack) or _from_local_binaries(stack)
        if server is None:
            raise PostgresUnavailable(
                f"no Postgres: set {DSN_ENV}, start a Docker engine (with the 'containers' extra),"
                " or install the PostgreSQL server binaries (initdb, pg_ctl)"
            )
        yield server


def _from_testcontainers(stack: contextlib.ExitStack) -> PostgresServer | None:
    try:
        import docker
        from testcontainers.postgres import PostgresContainer
    except ImportError:
        return None
    try:
        docker.from_env(timeout=3).ping()
    except Exception:  # no engine answering: docker raises several unrelated types here
        return None
    container = stack.enter_context(PostgresContainer("postgres:16-alpine", driver=None))
    return PostgresServer(container.get_connection_url(), "testcontainers")


def _postgres_bin_dir() -> Path | None:
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class LocalServer(PostgresServer):
    """A throwaway server racetape started itself from the local binaries: the only kind it
    may stop (:meth:`stop`); a server found through a DSN is never stopped."""

    data: Path = Path()
    bin_dir: Path = Path()
    as_user: tuple[str, ...] = ()
    options: str = ""  # the server's own, as pg_ctl -o takes them: the same on every start

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode``: the server goes away under whoever is connected."""
        subprocess.run(
            [*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode,
             "-w", "stop"],
            capture_output=True,
            check=True,
        )  # fmt: skip

    def start(self) -> None:
        """Start it again after :meth:`stop`, on the same port with the same data; returns
        once it accepts connections."""
        subprocess.run(
            [*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o",
             self.options, "-l", str(self.data.parent / "log"), "-w", "start"],
            capture_output=True,
            check=True,
        )  # fmt: skip


def start_local_server(stack: contextlib.ExitStack) -> LocalServer | None:
    """Start a throwaway server from the local binaries (None if there are none); ``stack``
    stops and deletes it. See the module's docstring."""
    return _from_local_binaries(stack)


def _from_local_binaries(stack: contextlib.ExitStack) -> LocalServer | None:
    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        return None
    as_user: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="racetape-pg-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    if os.geteuid() == 0:
        # initdb refuses to run as root; the server runs as the postgres user instead.
        shutil.chown(workdir, user="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = workdir / "data", _free_port()

    def run(*args: str) -> None:
        result = subprocess.run([*as_user, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise PostgresUnavailable(f"{Path(args[0]).name} failed: {' '.join(tail)}")

    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {workdir} -c fsync=off"
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(workdir / "log"),
        "-w",
        "start",
    )
    stack.callback(
        subprocess.run,
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
        capture_output=True,
        check=False,
    )
    return LocalServer(
        f"postgresql://postgres@127.0.0.1:{port}/postgres",
        "local-binaries",
        data=data,
        bin_dir=bin_dir,
        as_user=tuple(as_user),
        options=options,
    )
