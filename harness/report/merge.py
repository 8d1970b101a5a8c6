"""Shard results joined into one document, equal to one run of the same seeds.

Shards of one job (``racetape run --shard I/N`` with every other setting the same) split the
run indices of every group; each records the indices it finished (``runs_done``) and which of
them stranded (``strand_runs``), so the join is exact: counts add, index lists unite, and
``first_strand_run`` / ``runs_to_first_strand`` / ``windows_covered`` are recomputed from the
union. Refused, with a one-line :class:`ResultMismatch` naming the file and field:

* a document of another racetape version, or with any setting but ``shard`` and ``workers``
  different (workers change how runs are spread, never what a run does);
* shards of different counts (``1/2`` with ``1/4``), or the same shard of a group twice;
* a group (scenario, adapter, fault set, strategy) there twice in one document;
* two shards that both finished the same run of a group (overlapping ``runs_done``).

A CI matrix splits a job over shards *and* adapters, so a group need not be in every document:
a group that some shards lack is merged from those that have it, and the result says so in its
``notes``; ``settings.shard`` is ``1/1`` only when every group has every shard.

Timing fields (``elapsed_s``) add up the shards' times; ``runs_per_s`` follows from them.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Sequence
from typing import Any

from harness.report.summary import GroupKey, group_key, group_label
from harness.results import ResultMismatch, index_ranges
from racetape._result import totals

FREE_SETTINGS = {"shard", "workers"}
STOP_ORDER = {None: 0, "budget": 1, "interrupted": 2}


def parse_shard(text: str, source: str) -> tuple[set[int], int]:
    """``"2/4"`` -> ({2}, 4); a merged ``"1+3/4"`` -> ({1, 3}, 4)."""
    try:
        indices, count = text.split("/")
        shards, n = {int(i) for i in indices.split("+")}, int(count)
    except (ValueError, AttributeError):
        raise ResultMismatch(f"{source}: settings.shard: expected I/N, found {text!r}") from None
    if not all(1 <= i <= n for i in shards):
        raise ResultMismatch(f"{source}: settings.shard: {text!r} is not a shard of {n}")
    return shards, n


def _indices(ranges: list[list[int]]) -> set[int]:
    return {i for lo, hi in ranges for i in range(lo, hi + 1)}


def _check_alike(named: Sequence[tuple[str, dict[str, Any]]]) -> None:
    first_name, first = named[0]
    for name, doc in named[1:]:
        if doc.get("racetape") != first.get("racetape"):
            raise ResultMismatch(
                f"{name}: racetape: version {doc.get('racetape')!r} differs from {first_name}'s"
                f" {first.get('racetape')!r}; merge shards of one job"
            )
        settings, reference = doc.get("settings", {}), first.get("settings", {})
        for field in sorted((settings.keys() | reference.keys()) - FREE_SETTINGS):
            if settings.get(field) != reference.get(field):
                raise ResultMismatch(
                    f"{name}: settings.{field}: {settings.get(field)!r} differs from"
                    f" {first_name}'s {reference.get(field)!r}; shards of one job differ only in"
                    " --shard"
                )


def _shard_count(named: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """The one shard count N of every document (``I/N``)."""
    count = None
    for name, doc in named:
        _, n = parse_shard(str(doc.get("settings", {}).get("shard")), name)
        if count is not None and n != count:
            raise ResultMismatch(
                f"{name}: settings.shard: a shard of {n}, but {named[0][0]} is a shard of {count};"
                " merge shards of one split"
            )
        count = n
    assert count is not None
    return count


Entry = tuple[str, set[int], dict[str, Any]]  # document name, its shards, its entry for a group


def _entries_by_group(named: Sequence[tuple[str, dict[str, Any]]]) -> list[list[Entry]]:
    """Each group's entries across the documents that have it, in first-seen group order; no
    shard of a group may come from two documents."""
    by_key: dict[GroupKey, list[Entry]] = {}
    for name, doc in named:
        shards, n = parse_shard(str(doc["settings"]["shard"]), name)
        seen: set[GroupKey] = set()
        for group in doc["groups"]:
            key = group_key(group)
            if key in seen:
                raise ResultMismatch(f"{name}: groups: {group_label(group)} is there twice")
            seen.add(key)
            entries = by_key.setdefault(key, [])
            for other, other_shards, _ in entries:
                for shard in sorted(shards & other_shards):
                    raise ResultMismatch(
                        f"{name}: settings.shard: shard {shard}/{n} is also in {other}"
                        f" (group {group_label(group)})"
                    )
            entries.append((name, shards, group))
    return list(by_key.values())


def _merge_group(entries: list[Entry]) -> dict[str, Any]:
    names = [name for name, _, _ in entries]
    parts = [part for _, _, part in entries]
    head = parts[0]
    done: dict[int, str] = {}
    for name, part in zip(names, parts, strict=True):
        for index in sorted(_indices(part["runs_done"])):
            if index in done:
                raise ResultMismatch(
                    f"{name}: groups[{group_label(part)}].runs_done: run {index} is also in"
                    f" {done[index]}; shards must not overlap"
                )
            done[index] = name
        if part.get("windows_possible") != head.get("windows_possible"):
            raise ResultMismatch(
                f"{name}: groups[{group_label(part)}].windows_possible: differs from"
                f" {names[0]}'s; the scenario files differ"
            )
    strand_runs = sorted(i for p in parts for i in p["strand_runs"])
    first = strand_runs[0] if strand_runs else None
    kinds: Counter[str] = Counter()
    windows: Counter[str] = Counter()
    for part in parts:
        kinds.update(part["kinds"])
        windows.update(part["windows"])
    possible = head.get("windows_possible")
    runs = sum(p["runs"] for p in parts)
    elapsed = sum(float(p.get("elapsed_s") or 0) for p in parts)
    traces: list[tuple[int, str]] | None = []
    for part in parts:
        if traces is not None and len(part.get("trace_runs", [])) == len(part["traces"]):
            traces += zip(part["trace_runs"], part["traces"], strict=True)
        else:
            traces = None  # a document without trace_runs: order unknown, keep the shards' order
    kept = sorted(traces)[:5] if traces is not None else None
    exhausted = [p["exhausted"] for p in parts if p.get("exhausted") is not None]
    return {
        **{k: head[k] for k in ("scenario", "adapter", "faults", "strategy", "mode")},
        "runs": runs,
        "strands": sum(p["strands"] for p in parts),
        "kinds": dict(sorted(kinds.items())),
        "hung": sum(p["hung"] for p in parts),
        "first_strand_run": first,
        "runs_to_first_strand": (
            None if first is None else 1 + sum(1 for i in done if i < first)
        ),
        "strand_runs": strand_runs,
        "runs_done": index_ranges(list(done)),
        "windows": dict(sorted(windows.items())),
        "windows_possible": possible,
        "windows_covered": (
            None if possible is None else sum(1 for w in possible if w in windows)
        ),
        "problems": sorted({m for p in parts for m in p.get("problems", [])})[:5],
        "traces": (
            [path for _, path in kept] if kept is not None else
            [t for p in parts for t in p["traces"]][:5]
        ),
        **({"trace_runs": [run for run, _ in kept]} if kept is not None else {}),
        "elapsed_s": round(elapsed, 3),
        "runs_per_s": round(runs / elapsed, 1) if elapsed else None,
        "exhausted": all(exhausted) if exhausted else None,
        "stopped": max((p.get("stopped") for p in parts), key=lambda s: STOP_ORDER.get(s, 0)),
    }  # fmt: skip


def merge_documents(named: Sequence[tuple[str, dict[str, Any]]], *, command: str) -> dict[str, Any]:
    """Join shard documents (each with the name errors call it by) into one document."""
    if not named:
        raise ResultMismatch("merge: no result documents given")
    _check_alike(named)
    count = _shard_count(named)
    by_group = _entries_by_group(named)
    groups = [_merge_group(entries) for entries in by_group]
    first = named[0][1]
    notes = list(dict.fromkeys(note for _, doc in named for note in doc.get("notes", [])))
    every, covered, partial = set(range(1, count + 1)), set[int](), False
    for entries in by_group:
        shards = set[int]().union(*(shards for _, shards, _ in entries))
        covered |= shards
        if shards != every:
            partial = True
            have = "+".join(str(s) for s in sorted(shards))
            notes.append(f"{group_label(entries[0][2])}: only shard(s) {have} of {count}")
    shard = "+".join(str(s) for s in sorted(covered)) + f"/{count}" if partial else "1/1"
    return {
        "schema": first["schema"],
        "racetape": first.get("racetape"),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "settings": {**first["settings"], "shard": shard},
        "merged_from": [
            {"path": name, "shard": doc["settings"]["shard"], "command": doc.get("command")}
            for name, doc in named
        ],
        "notes": notes,
        "groups": groups,
        "totals": totals(groups),
    }
