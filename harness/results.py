"""The result document: one JSON file per ``racetape run``, schema ``racetape.result/1``.

Every report (Markdown, HTML, JUnit) is rendered from this document; its fields are documented
in the README ("Result document"). Counts are of runs: a run with two strand kinds counts once
in ``strands`` and once under each kind.
"""

from __future__ import annotations

import datetime
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from harness.campaign import GroupResult, Settings
from harness.files import read_json
from harness.scenario import Scenario
from harness.windows import Plan, possible_landings
from racetape._engine.jitter import STATISTICAL_NOTE
from racetape._result import SCHEMA, totals
from reftask.dsn import redact_dsn

RESULT_SCHEMA = SCHEMA  # one document, whether racetape's commands or its plugin wrote it


class ResultError(ValueError):
    """A result file that cannot be read; the message is one line naming file and field."""


class ResultMismatch(ResultError):
    """Result files that cannot be merged or compared with each other; one line, naming the
    file and field that differ."""


def index_ranges(indices: Sequence[int]) -> list[list[int]]:
    """Sorted indices as inclusive ranges: [0, 1, 2, 5] -> [[0, 2], [5, 5]]."""
    ranges: list[list[int]] = []
    for index in sorted(indices):
        if ranges and index == ranges[-1][1] + 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    return ranges


def possible_windows(scenario: Scenario) -> list[str] | None:
    """Every landing the scenario's cancel and crash plans can have, or None if unknowable."""
    plans: list[Plan] = [*scenario.cancels, *([scenario.crash] if scenario.crash else [])]
    possible: list[str] = []
    for plan in plans:
        landings = possible_landings(scenario, plan)
        if landings is None:
            return None
        possible += [w for w in landings if w not in possible]
    return possible


def group_summary(result: GroupResult) -> dict[str, Any]:
    group, records = result.group, result.records
    stranded = [r for r in records if r.stranded]
    kinds: Counter[str] = Counter(kind for r in records for kind in r.kinds)
    windows: Counter[str] = Counter(landing for r in records for landing in r.landings)
    first = stranded[0].index if stranded else None
    possible = possible_windows(group.scenario)
    return {
        "scenario": group.scenario.name,
        "adapter": group.adapter,
        "faults": sorted(f.value for f in group.faults),
        "strategy": group.strategy,
        "mode": "jitter" if group.strategy == "jitter" else "controlled",
        "runs": len(records),
        "strands": len(stranded),
        "kinds": dict(sorted(kinds.items())),
        "hung": sum(1 for r in records if r.hung),
        "first_strand_run": first,
        "runs_to_first_strand": (
            None if first is None else 1 + sum(1 for r in records if r.index < first)
        ),
        "strand_runs": [r.index for r in stranded],
        "runs_done": index_ranges([r.index for r in records]),
        "windows": dict(sorted(windows.items())),
        "windows_possible": possible,
        "windows_covered": (None if possible is None else sum(1 for w in possible if w in windows)),
        "problems": sorted({r.problem for r in records if r.problem})[:5],
        "traces": result.traces,
        # The run index of each trace, so shards merge their traces in run order: the runner
        # writes the first failing records that kept a trace, in index order (_write_traces).
        "trace_runs": [r.index for r in records if r.trace is not None][: len(result.traces)],
        "elapsed_s": round(result.elapsed, 3),
        "runs_per_s": round(len(records) / result.elapsed, 1) if result.elapsed else None,
        "exhausted": result.exhausted,
        "stopped": result.stopped,
    }


def result_document(
    results: Sequence[GroupResult],
    settings: Settings,
    *,
    command: str,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    groups = [group_summary(r) for r in results]
    notes = [
        *notes,
        *dict.fromkeys(note for r in results for note in r.notes),
        *([STATISTICAL_NOTE] if any(g["mode"] == "jitter" for g in groups) else []),
    ]
    return {
        "schema": RESULT_SCHEMA,
        "racetape": version("racetape"),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "settings": {
            "runs": settings.runs,
            "seed": settings.seed,
            "shard": f"{settings.shard[0]}/{settings.shard[1]}",
            "workers": settings.workers,
            "budget_s": settings.budget,
            "settle_timeout_s": settings.settle_timeout,
            "pct_depth": settings.pct_depth,
            "jitter_max_delay_s": settings.jitter_max_delay,
            "reconnect_within_s": settings.reconnect_within,
        },
        "notes": notes,
        "groups": groups,
        "totals": totals(groups),
    }


def load_result(path: Path) -> dict[str, Any]:
    """The result document at ``path``, with every field the reports, ``merge`` and
    ``compare`` read checked for its type and shape; anything else is a :class:`ResultError`
    naming the file and the field (``groups[2].kinds``), whatever the bytes in the file."""
    data = read_json(path, ResultError, "result")
    if not isinstance(data, dict) or data.get("schema") != RESULT_SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ResultError(f"{path}: schema: expected {RESULT_SCHEMA!r}, found {str(found)[:80]!r}")
    if not isinstance(data.get("groups"), list):
        raise ResultError(f"{path}: groups: missing or not a list")
    if not isinstance(data.get("settings"), dict):
        raise ResultError(f"{path}: settings: missing or not an object")
    _check_fields(path, "", data, DOCUMENT_FIELDS, required=False)
    settings = data["settings"]
    _check_fields(path, "settings.", settings, {"shard": SETTINGS_FIELDS["shard"]}, required=True)
    _check_fields(path, "settings.", data["settings"], SETTINGS_FIELDS, required=False)
    for number, shard in enumerate(data.get("shards") or []):
        if not isinstance(shard, dict):
            raise ResultError(f"{path}: shards[{number}]: not an object")
    _redact_commands(data)
    for number, group in enumerate(data["groups"]):
        if not isinstance(group, dict):
            raise ResultError(f"{path}: groups[{number}]: not an object")
        where = f"groups[{number}]."
        _check_fields(path, where, group, GROUP_FIELDS, required=True)
        _check_fields(path, where, group, GROUP_OPTIONAL_FIELDS, required=False)
        if (
            group["strands"] > group["runs"]
            or min(group["strands"], group["runs"], group["hung"]) < 0
        ):
            raise ResultError(
                f"{path}: groups[{number}].strands: {group['strands']} of {group['runs']} runs"
                " is not a count of runs"
            )
    return data


def _check_fields(
    path: Path, where: str, table: dict[str, Any], fields: dict[str, Shape], *, required: bool
) -> None:
    for field, (check, what) in fields.items():
        if field not in table and not required:
            continue
        if not check(table.get(field)):
            raise ResultError(
                f"{path}: {where}{field}: missing or not {what}; write it with racetape run"
            )


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return (_int(value) or isinstance(value, float)) and math.isfinite(value)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(check(v) for v in value)


def _map_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, dict) and all(check(v) for v in value.values())


def _or_none(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _str(value: Any) -> bool:
    return isinstance(value, str)


def _range(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_int(v) for v in value)


def _shard(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9+/]{3,200}", value) is not None


Shape = tuple[Callable[[Any], bool], str]

# What the reports read of each group; load_result refuses a document without them.
GROUP_FIELDS: dict[str, Shape] = {
    "scenario": (_str, "a string"),
    "adapter": (_str, "a string"),
    "faults": (_list_of(_str), "a list of fault names"),
    "strategy": (_str, "a string"),
    "runs": (_int, "an integer"),
    "strands": (_int, "an integer"),
    "kinds": (_map_of(_int), "an object of counts"),
    "hung": (_int, "an integer"),
    "strand_runs": (_list_of(_int), "a list of run numbers"),
    "runs_done": (_list_of(_range), "a list of [first, last] run ranges"),
    "windows": (_map_of(_int), "an object of counts"),
    "traces": (_list_of(_str), "a list of paths"),
}
# ... and what they read where it is there.
GROUP_OPTIONAL_FIELDS: dict[str, Shape] = {
    "mode": (_str, "a string"),
    "first_strand_run": (_or_none(_int), "a run number or null"),
    "runs_to_first_strand": (_or_none(_int), "a count or null"),
    "windows_possible": (_or_none(_list_of(_str)), "a list of window names or null"),
    "windows_covered": (_or_none(_int), "a count or null"),
    "problems": (_list_of(_str), "a list of strings"),
    "trace_runs": (_list_of(_int), "a list of run numbers"),
    "elapsed_s": (_number, "a number"),
    "runs_per_s": (_or_none(_number), "a number or null"),
    "exhausted": (_or_none(lambda v: isinstance(v, bool)), "true, false or null"),
    "stopped": (_or_none(_str), "a string or null"),
}
SETTINGS_FIELDS: dict[str, Shape] = {
    "runs": (_int, "an integer"),
    "seed": (_int, "an integer"),
    "shard": (_shard, "a shard like 1/4 or 1+3/4"),
    "workers": (_int, "an integer"),
    "budget_s": (_or_none(_number), "a number or null"),
    "settle_timeout_s": (_or_none(_number), "a number or null"),
    "pct_depth": (_or_none(_int), "an integer or null"),
    "jitter_max_delay_s": (_or_none(_number), "a number or null"),
}
DOCUMENT_FIELDS: dict[str, Shape] = {
    "totals": (_map_of(_int), "an object of counts"),
    "command": (_str, "a string"),
    "notes": (_list_of(_str), "a list of strings"),
    "shards": (_list_of(lambda v: isinstance(v, dict)), "a list of objects"),
    "created": (_str, "a string"),
    "racetape": (_str, "a string"),
}


def _redact_commands(data: dict[str, Any]) -> None:
    """A result written before passwords were redacted still renders none: every command it
    records (its own, its shards') goes through :func:`reftask.dsn.redact_dsn` on loading."""
    if isinstance(data.get("command"), str):
        data["command"] = redact_dsn(data["command"])
    for shard in data.get("shards") or []:
        if isinstance(shard, dict) and isinstance(shard.get("command"), str):
            shard["command"] = redact_dsn(shard["command"])
