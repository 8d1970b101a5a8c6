"""The pytest plugin's ``--race-json`` document, and the one atomic write it needs.

The document is a ``racetape.result/1`` (the reference harness's result schema, documented in
docs/result.md), so ``racetape report``, ``report compare`` and ``report merge`` read it as they
read a ``racetape run``'s. One group per raced test:

* ``scenario`` is the test's node id (without the run's parameter), ``adapter`` is ``"pytest"``,
  ``faults`` is empty, ``strategy`` is the controlled search's name or ``"jitter"``;
* ``runs`` are the test's runs that ran, ``strands`` its failing runs (``kinds``:
  ``{"failed": k}``), ``strand_runs`` their run numbers, ``runs_done`` the run numbers that ran;
* ``pytest`` (only here) holds ``nodeid``, ``replay`` (the command that replays the first failing
  run), ``first_failure`` (``run``, ``node``, ``seed`` or ``schedule``, ``error``: its exception's
  type and first line, ``when``: the phase that failed, ``report``: the lines
  of its racetape section), ``failing`` (every failing run's seed or schedule, in run order),
  ``covered`` (controlled: what the search covered), ``uncontrolled``, ``trace`` (the first
  failing run's trace, relative to the document's folder; ``racetape replay`` and ``racetape
  shrink`` take it, or the node id) and ``traces`` (every failing run's that wrote one).
  The harness's own ``traces`` stay empty: a pytest trace is not a catalog run's.

Only the standard library: the plugin stays light.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

SCHEMA = "racetape.result/1"
"""The result document's schema, for the plugin's and the harness's (harness.results) alike."""


@dataclass
class Tally:
    """What the session saw of one raced test's runs (on xdist's controller: every worker's)."""

    runs: dict[str, int] = field(default_factory=dict)  # node id -> run number, of runs that ran
    failed: dict[str, str] = field(default_factory=dict)  # node id -> its replay command
    labels: dict[str, str] = field(default_factory=dict)  # failed node id -> seed or schedule
    reports: dict[str, list[str]] = field(default_factory=dict)  # failed node id -> section
    traces: dict[str, str] = field(default_factory=dict)  # failed node id -> its trace's path
    errors: dict[str, str] = field(default_factory=dict)  # failed node id -> "Type: message"
    whens: dict[str, str] = field(default_factory=dict)  # failed node id -> its failing phase
    kind: str = "seed"  # what labels are: "seed" or "schedule"
    notes: set[str] = field(default_factory=set)  # what a run could not control
    verdict: str = ""  # controlled: what the test's search covered
    elapsed: float = 0.0  # seconds, the runs' calls


def _ranges(numbers: Sequence[int]) -> list[list[int]]:
    ranges: list[list[int]] = []
    for n in sorted(set(numbers)):
        if ranges and n == ranges[-1][1] + 1:
            ranges[-1][1] = n
        else:
            ranges.append([n, n])
    return ranges


def _linked(path: str, base: Path | None) -> str:
    """A trace's path as the document names it: relative to the document's folder (so a
    folder of results and traces moves as one), absolute where it is on another drive."""
    if base is None:
        return path
    try:
        return os.path.relpath(Path(path).resolve(), base.resolve())
    except ValueError:
        return path


def _group(
    test: str, runs: Tally, strategy: str, mode: str, base: Path | None = None
) -> dict[str, Any]:
    failing = sorted(((node, runs.runs.get(node, 0)) for node in runs.failed), key=lambda f: f[1])
    first_node, first_run = failing[0] if failing else (None, None)
    pytest_part: dict[str, Any] = {
        "nodeid": test,
        "replay": runs.failed.get(first_node) if first_node else None,
        "first_failure": None,
        "failing": [runs.labels.get(node, "?") for node, _ in failing],
        "covered": runs.verdict,
        "uncontrolled": sorted(runs.notes),
    }
    trace = runs.traces.get(first_node) if first_node else None
    pytest_part["trace"] = _linked(trace, base) if trace is not None else None
    pytest_part["traces"] = [
        _linked(runs.traces[node], base) for node, _ in failing if node in runs.traces
    ]
    if first_node is not None:
        pytest_part["first_failure"] = {
            "run": first_run,
            "node": first_node,
            runs.kind: runs.labels.get(first_node, "?"),
            "error": runs.errors.get(first_node),
            "when": runs.whens.get(first_node),
            "report": runs.reports.get(first_node, []),
        }
    n = len(runs.runs)
    return {
        "scenario": test,
        "adapter": "pytest",
        "faults": [],
        "strategy": strategy,
        "mode": mode,
        "runs": n,
        "strands": len(failing),
        "kinds": {"failed": len(failing)} if failing else {},
        "hung": 0,
        "first_strand_run": first_run,
        "runs_to_first_strand": (
            None if first_run is None else 1 + sum(1 for r in runs.runs.values() if r < first_run)
        ),
        "strand_runs": [run for _, run in failing],
        "runs_done": _ranges(list(runs.runs.values())),
        "windows": {},
        "windows_possible": None,
        "windows_covered": None,
        "problems": [],
        "traces": [],
        "trace_runs": [],
        "elapsed_s": round(runs.elapsed, 3),
        "runs_per_s": round(n / runs.elapsed, 1) if runs.elapsed > 0 else None,
        "exhausted": runs.verdict.endswith("complete") if mode == "controlled" else None,
        "stopped": None,
        "pytest": pytest_part,
    }


def result_document(
    tests: Mapping[str, Tally],
    *,
    command: str,
    mode: str,
    strategy: str,
    runs: int | None,
    base_seed: int,
    max_delay: float | None,
    notes: Sequence[str],
    base: Path | None = None,
) -> dict[str, Any]:
    """The session's ``racetape.result/1`` document (see the module's docstring); trace paths
    are relative to ``base``, the document's folder."""
    groups = [_group(test, tests[test], strategy, mode, base) for test in sorted(tests)]
    return {
        "schema": SCHEMA,
        "racetape": version("racetape"),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "settings": {
            "runs": runs or 0,
            "seed": base_seed,
            "shard": "1/1",
            "workers": 1,
            "budget_s": None,
            "settle_timeout_s": None,
            "pct_depth": None,
            "jitter_max_delay_s": max_delay if mode == "jitter" else None,
        },
        "notes": list(notes),
        "groups": groups,
        "totals": totals(groups),
    }


def totals(groups: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """A document's ``totals``: runs, strands and hung runs over its groups."""
    return {key: sum(g[key] for g in groups) for key in ("runs", "strands", "hung")}


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as strict JSON at ``path``: written to a temporary file beside it, then renamed
    over it, so a reader never sees half of it; the file gets the user's umask (0644 under
    022), as ``open`` would give it."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            mask = os.umask(0o022)
            os.umask(mask)
            os.fchmod(handle.fileno(), 0o666 & ~mask)
            handle.write(text)
        if path.exists() and not path.is_file():  # made one since the flag was checked
            raise IsADirectoryError(f"{path} is not a regular file: not replaced")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
