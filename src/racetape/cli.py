"""``racetape``, the command: a thin dispatcher over the commands its providers register.

A provider is any installed distribution with entries in the entry-point group
``racetape.commands``: the entry's name is a command, its value a callable
``main(argv: list[str]) -> int`` that is handed the whole command line (command name first)
and parses it itself. The reference harness registers ``run``, ``replay``, ``report``, ...
(see ``pyproject.toml``). racetape itself knows only ``version``, the help, and ``replay`` and
``shrink`` of a pytest test (a node id, or a trace the plugin wrote: :mod:`racetape._pytest_cli`,
which needs no provider); it never imports
a provider until its command is asked for, so the library stands alone and a provider can be
installed, or not, without racetape knowing its name. A command that needs a package of an
extra not installed (``racetape[harness]``, ``racetape[report]``) says so in one line, exit 2.

A stop signal (SIGINT, SIGTERM, SIGHUP) that comes while a command starts (its provider's
imports, its argument checks), before the command takes the signals itself, ends it with one
line and ``128 + the signal``, as every command's own policy does; nothing has been made yet.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import cast

GROUP = "racetape.commands"

# The packages an extra brings (pyproject.toml), for the one line a command prints without it.
EXTRA_OF = {
    "aiosqlite": "harness",
    "asyncpg": "harness",
    "jinja2": "report",
    "matplotlib": "report",
}

Command = Callable[[list[str]], int]


def commands() -> dict[str, str]:
    """Every registered command, and the ``module:function`` that runs it, by name."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def _load(name: str) -> Command:
    (entry,) = entry_points(group=GROUP, name=name)
    return cast("Command", entry.load())


# The pytest side's flags (racetape._pytest_cli) that take no value; any other flag is taken to
# take one (--traces DIR, a provider's --pg-dsn DSN ...) unless written --flag=VALUE.
_NO_VALUE = frozenset({"-q", "--quiet", "-v", "--verbose", "-h", "--help"})
_NODE_ID = re.compile(r"[^:]+\.py(::|$)")  # a test file, then (maybe) its test: as pytest types it
PYTEST_TRACES = "racetape.pytest-trace/"  # every version's schema starts so (racetape._traces)


def _positionals(argv: Sequence[str]) -> Iterator[str]:
    """The positional arguments of ``replay/shrink ARGS`` (before any ``--``)."""
    words = iter(argv)
    for word in words:
        if word == "--":
            return
        if word.startswith("-"):
            if "=" not in word and word not in _NO_VALUE:
                next(words, None)  # its value, whatever it looks like (a DSN's [::1] ...)
            continue
        yield word


def _pytest_file(path: Path) -> bool:
    """Whether the file ``path`` is the pytest side's: a pytest trace of any version, a test
    file, or no JSON at all (its one line then needs no provider); a catalog trace is not."""
    if path.suffix == ".py":
        return True
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return True
    schema = data.get("schema") if isinstance(data, dict) else None
    return isinstance(schema, str) and schema.startswith(PYTEST_TRACES)


def is_pytest_target(argv: Sequence[str]) -> bool:
    """Whether ``racetape replay/shrink ARGS`` is about a pytest test, decided by its first
    positional argument: an existing file by what it holds (:func:`_pytest_file`), else a node
    id (``path.py::test``, or a ``.py`` path); or ``--traces`` (only the pytest side has it)."""
    words = list(argv[1:])
    flags = words[: words.index("--")] if "--" in words else words
    if any(w == "--traces" or w.startswith("--traces=") for w in flags):
        return True
    for word in _positionals(words):
        path = Path(word)
        if path.is_file():
            return _pytest_file(path)
        return _NODE_ID.match(word) is not None
    return False


def _usage(registered: dict[str, str]) -> str:
    names = ", ".join(sorted(registered)) or "none installed"
    return (
        "usage: racetape COMMAND [ARGS ...]   (racetape COMMAND --help for its flags)\n"
        f"commands: {names}; version\n"
    )


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _starting(heard: list[int]) -> Iterator[None]:
    """While a command starts: each stop signal is noted in ``heard`` and raises
    KeyboardInterrupt, as Ctrl-C does; the handlers found are given back afterwards."""

    def stop(signum: int, frame: object) -> None:
        heard.append(signum)
        raise KeyboardInterrupt

    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    registered = commands()
    name = args[0] if args else None
    # A pytest test's (a node id, a trace the plugin wrote) is racetape's own: it needs nothing
    # but pytest; a catalog trace is the provider's.
    if name in ("replay", "shrink") and is_pytest_target(args):
        from racetape import _pytest_cli

        return (_pytest_cli.replay_main if name == "replay" else _pytest_cli.shrink_main)(args)
    if name is not None and name in registered:
        heard: list[int] = []
        try:
            with _starting(heard):
                return _load(name)(args)
        except KeyboardInterrupt:  # before the command took the signals (or it let one out)
            signum = heard[0] if heard else signal.SIGINT
            print(f"racetape: stopped by {signal.Signals(signum).name}", file=sys.stderr)
            return 128 + signum
        except ModuleNotFoundError as exc:
            root = (exc.name or "").partition(".")[0]
            if root not in EXTRA_OF:
                raise
            extra = EXTRA_OF[root]
            print(
                f"racetape {name}: needs {root}, from the {extra!r} extra: pip install"
                f" 'racetape[{extra}]'",
                file=sys.stderr,
            )
            return 2
    if name in ("version", "--version"):
        print(f"racetape {version('racetape')}")
        return 0
    if name in ("-h", "--help"):
        print(
            "Deterministic race reproduction and stress harness.\n\n" + _usage(registered), end=""
        )
        return 0
    problem = "a command is required" if name is None else f"unknown command {name!r}"
    print(_usage(registered) + f"racetape: error: {problem}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
