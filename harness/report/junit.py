"""JUnit XML: one testcase per group (scenario x adapter x fault set x strategy).

A group fails when any run stranded or hung: the failure names the strand kinds and counts, the
first failing run's violations (read from its trace when ``base`` is given and the trace is
there), and the exact command that replays it. A group with no finished run is skipped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from harness.report.summary import GroupFigures, figures
from harness.traces import TraceError, load_trace_document, violation_lines
from reftask.faults import fault_set_label


def _violations(trace_path: str, base: Path | None) -> list[str]:
    if base is None:
        return []
    path = Path(trace_path) if Path(trace_path).is_absolute() else base / trace_path
    try:
        outcome = load_trace_document(path)["outcome"]
    except TraceError as exc:
        return [f"(trace {path} could not be read: {exc})"]
    return violation_lines(outcome)


def _failure_text(f: GroupFigures, base: Path | None) -> tuple[str, str]:
    group = f.group
    parts = []
    if f.strands:
        parts.append(f"{f.strands}/{f.runs} runs stranded ({f.kinds})")
    if group["hung"]:
        parts.append(f"{group['hung']}/{f.runs} runs hung")
    message = "; ".join(parts)
    body = [message, f"rate {f.rate_text}, 95% upper bound {f.upper_text}"]
    if group.get("first_strand_run") is not None:
        body.append(f"first stranded run: {group['first_strand_run']}")
    if f.first_trace:
        body += _violations(f.first_trace, base)
        body.append(f"replay: {f.replay}")
    elif isinstance(pytest_part := group.get("pytest"), dict) and pytest_part.get("replay"):
        # a raced pytest test (pytest --race-json): its first failing run's report and replay
        first = pytest_part.get("first_failure") or {}
        body += [str(line) for line in first.get("report") or []]
        body.append(f"replay: {pytest_part['replay']}")
    else:
        body.append("no trace was kept for this group")
    body += [f"problem: {p}" for p in group.get("problems", [])]
    return message, "\n".join(body)


def render_junit(doc: dict[str, Any], base: Path | None = None) -> str:
    """The document as JUnit XML; with ``base``, failures quote their trace's violations."""
    groups = [figures(g) for g in doc["groups"]]
    failures = sum(1 for f in groups if f.failed)
    skipped = sum(1 for f in groups if not f.runs)
    elapsed = sum(float(f.group.get("elapsed_s") or 0) for f in groups)
    counts = {
        "tests": str(len(groups)),
        "failures": str(failures),
        "errors": "0",
        "skipped": str(skipped),
        "time": f"{elapsed:.3f}",
    }
    suites = ET.Element("testsuites", {"name": "racetape", **counts})
    suite = ET.SubElement(
        suites,
        "testsuite",
        {"name": "racetape", "timestamp": str(doc.get("created", "")), **counts},
    )
    properties = ET.SubElement(suite, "properties")
    settings = doc.get("settings", {})
    for name, value in [("command", doc.get("command", "")), *sorted(settings.items())]:
        if value is not None:  # a setting not set is left out, never written as "None"
            ET.SubElement(properties, "property", name=str(name), value=str(value))
    for f in groups:
        group = f.group
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"racetape.{group['scenario']}",
            name=f"{group['adapter']} / {fault_set_label(group['faults'])} / {group['strategy']}",
            time=f"{float(group.get('elapsed_s') or 0):.3f}",
        )
        if not f.runs:
            ET.SubElement(case, "skipped", message=f"no run finished ({group.get('stopped')})")
        elif f.failed:
            message, text = _failure_text(f, base)
            kind = next(iter(group["kinds"]), "hung")
            failure = ET.SubElement(case, "failure", message=message, type=kind)
            failure.text = text
        ET.SubElement(case, "system-out").text = (
            f"{f.strands}/{f.runs} runs stranded; rate {f.rate_text},"
            f" 95% upper bound {f.upper_text}"
        )
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
