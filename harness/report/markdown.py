"""The Markdown report: a pull-request comment, or ``$GITHUB_STEP_SUMMARY``.

One row per scenario x adapter x fault set x strategy: strands / runs, the rate, its exact 95%
upper bound, and the command that replays the group's first failing run; then the bound's
definition and a sentence for each strand kind found, the same words as the HTML page's.
"""

from __future__ import annotations

from typing import Any

from harness.report.summary import BOUND_DEFINITION, BOUND_NAME, figures, kinds_found
from reftask.faults import fault_set_label


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: dict[str, Any]) -> str:
    totals = doc.get("totals", {})
    settings = doc.get("settings", {})
    lines = [
        "## racetape",
        "",
        f"{totals.get('strands', 0)} stranded of {totals.get('runs', 0)} runs"
        f" ({totals.get('hung', 0)} hung); seed {settings.get('seed')},"
        f" shard {settings.get('shard')}, `{cell(str(doc.get('command', '')))}`",
        "",
        f"| scenario | adapter | faults | strategy | strands / runs | rate | {BOUND_NAME}"
        " | kinds | replay the first failing run |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for group in doc["groups"]:
        f = figures(group)
        runs = f"{f.strands} / {f.runs}"
        if group.get("hung"):
            runs += f" ({group['hung']} hung)"
        if group.get("stopped"):
            runs += f" ({group['stopped']})"
        replay = f"`{cell(f.replay)}`" if f.replay else "-"
        lines.append(
            f"| {cell(group['scenario'])} | {group['adapter']} | {fault_set_label(group['faults'])}"
            f" | {group['strategy']} | {runs} | {f.rate_text} | {f.upper_text}"
            f" | {cell(f.kinds) or '-'} | {replay} |"
        )
    lines.append("")
    lines.append(BOUND_DEFINITION)
    kinds = kinds_found([figures(group) for group in doc["groups"]])
    if kinds:
        lines += ["", "Strand kinds found:", ""]
        lines += [f"- `{kind}`: {sentence}" for kind, sentence in kinds]
    lines += [f"\n> **note:** {cell(note)}" for note in doc.get("notes", [])]
    return "\n".join(lines) + "\n"
