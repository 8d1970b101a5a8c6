"""Terminal output: progress, the run summary, a replay's timeline. Rich on a terminal, plain
lines otherwise (CI logs)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from harness.campaign import Group, RunRecord
from harness.campaign import Progress as ProgressSink
from harness.replay import Replayed
from harness.run import RunResult
from harness.search import Exploration
from harness.shapes import describe_shape
from harness.shrink import Shrunk
from harness.traces import describe_kinds, kinds_of, outcome_of, violation_lines
from racetape._engine.drawn import deviations
from racetape._engine.schedule import Decision
from reftask.faults import fault_set_label

if TYPE_CHECKING:
    from harness.report.compare import Comparison  # harness.report: only when comparing

COMMIT_POINTS = {"append.done", "status.committed", "create.done"}


def console(*, stderr: bool = False) -> Console:
    # Not a terminal (CI logs, pipes): wide enough that tables stay one line per row.
    stream = sys.stderr if stderr else sys.stdout
    return Console(highlight=False, stderr=stderr, width=None if stream.isatty() else 160)


class RichProgress(ProgressSink):
    """A bar with runs, strands, runs/s and the time left; under a budget the bar is the
    budget's time (the runs asked for are a cap a budgeted job rarely reaches)."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[runs]}"),
            TextColumn("strands {task.fields[strands]}"),
            TextColumn("{task.fields[rate]} runs/s"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: Any = None
        self._strands = self._done = self._total = 0
        self._budget: float | None = None
        self._started = time.monotonic()

    def start(self, total: int, budget: float | None = None) -> None:
        self._total, self._budget, self._started = total, budget, time.monotonic()
        self._progress.start()
        self._task = self._progress.add_task(
            "runs", total=budget or total, strands=0, runs=self._runs(), rate="-"
        )

    def _runs(self) -> str:
        return f"{self._done} runs" if self._budget else f"{self._done}/{self._total}"

    def advance(self, group: Group, record: RunRecord) -> None:
        self._strands += record.stranded
        self._done += 1
        elapsed = time.monotonic() - self._started
        rate = f"{self._done / elapsed:.0f}" if elapsed > 0 else "-"
        completed = min(elapsed, self._budget) if self._budget else float(self._done)
        self._progress.update(
            self._task,
            completed=completed,
            description=group.scenario.name,
            strands=self._strands,
            runs=self._runs(),
            rate=rate,
        )

    def finish(self) -> None:
        self._progress.stop()


class PlainProgress(ProgressSink):
    """A line at most every few seconds, and one per group as it finishes: runs, runs/s and
    the time left (of the budget, under one)."""

    def __init__(self, every: float = 5.0) -> None:
        self._every, self._total, self._done, self._last = every, 0, 0, time.monotonic()
        self._budget: float | None = None
        self._started = time.monotonic()

    def start(self, total: int, budget: float | None = None) -> None:
        self._total, self._budget, self._started = total, budget, time.monotonic()
        cap = f" (at most; a budget of {budget:g} s)" if budget else ""
        print(f"racetape: {total} runs{cap}", file=sys.stderr, flush=True)

    def advance(self, group: Group, record: RunRecord) -> None:
        self._done += 1
        if time.monotonic() - self._last >= self._every or self._done == self._total:
            self._last = time.monotonic()
            print(f"racetape: {self.line()} ({group.label})", file=sys.stderr, flush=True)

    def line(self) -> str:
        """Runs done, runs/s, and the time left."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self._done / elapsed
        if self._budget:
            left = max(0.0, self._budget - elapsed)
            return f"{self._done} runs, {rate:.0f} runs/s, {left:.0f} s of the budget left"
        left = (self._total - self._done) / rate if rate else 0.0
        return f"{self._done}/{self._total} runs, {rate:.0f} runs/s, about {left:.0f} s left"


def progress_for_terminal() -> ProgressSink:
    return RichProgress() if sys.stderr.isatty() else PlainProgress()


class RunLines(ProgressSink):
    """-v: the bar, and one line per run on stdout (its group, number, outcome, decisions)."""

    def __init__(self, bar: ProgressSink, out: Console | None = None) -> None:
        self.bar, self.out = bar, out or console()

    def start(self, total: int, budget: float | None = None) -> None:
        self.bar.start(total, budget)

    def advance(self, group: Group, record: RunRecord) -> None:
        self.bar.advance(group, record)
        self.out.print(run_line(group, record), soft_wrap=True, markup=False)

    def finish(self) -> None:
        self.bar.finish()


def run_line(group: Group, record: RunRecord) -> str:
    """``run 7 of NAME/sqlite/random: stranded (final-not-last), 41 decisions, 12 ms``."""
    if record.hung:
        outcome = f"hung ({record.problem})"
    elif record.kinds:
        outcome = f"stranded ({', '.join(record.kinds)})"
    else:
        outcome = "ok"
    return (
        f"run {record.index} of {group.label}: {outcome}, {record.steps} decisions,"
        f" {record.elapsed * 1000:.0f} ms"
    )


def progress_for(quiet: bool, verbose: bool) -> ProgressSink:
    """-q: nothing (the runner's silent default); -v: the bar and a line per run."""
    if quiet:
        return ProgressSink()
    bar = progress_for_terminal()
    return RunLines(bar) if verbose else bar


def _outcome(result: RunResult) -> str:
    if result.unsettled:
        return f"{result.schedule.outcome}"
    return describe_kinds(kinds_of(result))


def shrink_run_line(number: int, result: RunResult) -> str:
    """One of a shrink's runs: ``run 3: 2 deviations, 30 decisions, task 1: final-not-last``."""
    decisions = result.schedule.decisions
    return (
        f"run {number}: {deviations(decisions)} deviations, {len(decisions)} decisions,"
        f" {_outcome(result)}"
    )


def explore_run_line(number: int, result: RunResult) -> str:
    """One of an exploration's runs: its deviations, decisions and outcome."""
    return shrink_run_line(number, result)


def replay_verdict(replayed: Replayed) -> str:
    """-q's one line: what the replay gave, beside what was recorded."""
    recorded = describe_kinds(replayed.trace.recorded_kinds())
    replayed_as = _outcome(replayed.result)
    same = "same as recorded" if replayed.same_outcome else "differs from the recording"
    line = f"replay: recorded {recorded}; replayed {replayed_as}: {same}"
    if replayed.finding is not None:
        line += f"; cross-adapter finding: {replayed.finding}"
    return line


def summary_table(doc: dict[str, Any]) -> Table:
    table = Table(title="racetape run", show_lines=False)
    for column in (
        "scenario",
        "adapter",
        "faults",
        "strategy",
        "strands/runs",
        "kinds",
        "hung",
        "runs/s",
        "windows",
    ):
        table.add_column(column, overflow="fold")
    for g in doc["groups"]:
        kinds = ", ".join(f"{k} {n}" for k, n in g["kinds"].items()) or "-"
        runs = f"{g['strands']}/{g['runs']}"
        if g.get("exhausted") is not None:
            runs += " (exhausted)" if g["exhausted"] else " (bound reached)"
        if g.get("stopped"):
            runs += f" ({g['stopped']})"
        table.add_row(
            g["scenario"],
            g["adapter"],
            fault_set_label(g["faults"]),
            g["strategy"],
            runs,
            kinds,
            str(g["hung"]),
            str(g["runs_per_s"] or "-"),
            _coverage(g),
        )
    return table


def comparison_table(comparison: Comparison) -> Table:
    table = Table(title=f"racetape compare: {comparison.before_name} -> {comparison.after_name}")
    for column in ("scenario", "adapter", "faults", "strategy", "strands/runs", "rate"):
        table.add_column(column, overflow="fold")
    table.add_column("verdict")
    table.add_column("p (Fisher)")
    colours = {"better": "green", "worse": "red"}
    for pair in comparison.pairs:
        g = pair.any_side
        colour = colours.get(pair.verdict)
        verdict = f"[{colour}]{pair.verdict}[/]" if colour else pair.verdict
        table.add_row(
            g["scenario"], g["adapter"], pair.faults, g["strategy"], pair.counts, pair.rates,
            verdict, pair.p_value,
        )  # fmt: skip
    return table


def matrix_table(doc: dict[str, Any]) -> Table:
    """Per fault (and none) and adapter x strategy: the scenario that strands soonest."""
    budget = doc["runs_per_seed"]
    table = Table(title=f"detection power: runs to first strand, {doc['seeds']} seeds")
    columns = sorted({(r["adapter"], r["strategy"]) for r in doc["cells"]})
    table.add_column("fault")
    for adapter, strategy in columns:
        table.add_column(f"{adapter} / {strategy}", overflow="fold")
    faults = list(dict.fromkeys(r["fault"] for r in doc["cells"]))
    for fault in faults:
        cells = []
        for adapter, strategy in columns:
            rows = [
                r for r in doc["cells"]
                if r["fault"] == fault and r["adapter"] == adapter and r["strategy"] == strategy
            ]  # fmt: skip
            if fault is None:
                strands = sum(r["strands"] for r in rows)
                runs = sum(r["runs"] for r in rows)
                cells.append(f"{strands}/{runs} strands" + (" [red]FINDING[/]" if strands else ""))
                continue
            found = [r for r in rows if r["median_runs_to_first"] is not None]
            if not found:
                # A gap is what the document calls one: no strand at all. Strands in fewer
                # than half the seeds are a slow catch, and say so, as the Markdown does.
                stranded = [r for r in rows if r["strands"]]
                if not stranded:
                    cells.append("[red]gap[/]")
                    continue
                slow = max(stranded, key=lambda r: r["rate"])
                cells.append(
                    f"{slow['scenario']}: median >{budget}, {slow['strands']}/{slow['runs']}"
                    " strands"
                )
                continue
            best = min(found, key=lambda r: (r["median_runs_to_first"], -r["rate"]))
            worst = best["max_runs_to_first"]
            cells.append(
                f"{best['scenario']}: median {best['median_runs_to_first']},"
                f" max {worst if worst is not None else f'>{budget}'}, rate {best['rate']:.2f}"
            )
        table.add_row(fault or "none (fault-free)", *cells)
    return table


def bench_table(result: dict[str, Any]) -> Table:
    """One adapter's bench figures; the ratios and RSS in the caption."""
    table = Table(title=f"racetape bench: {result['adapter']}, late-progress")
    for column in ("figure", "runs", "seconds", "runs/s", "strands", "runs to first strand"):
        table.add_column(column)
    for figure in result["figures"].values():
        first = figure["runs_to_first_strand"]
        if figure.get("repeats") is None:
            shown = "-"
        elif first is None:
            shown = f"none within {figure['budget']}"
        else:
            shown = f"{first:g} (median of {figure['repeats']})"
        strands = "-" if figure["strands"] is None else f"{figure['strands']}/{figure['runs']}"
        table.add_row(
            figure["name"], str(figure["runs"]), f"{figure['seconds']:.2f}",
            f"{figure['runs_per_s']:.1f}", strands, shown,
        )  # fmt: skip
    ratios = result["ratios"]
    detection = ratios["naive_over_controlled_runs_to_first_strand"]
    bound = ">=" if ratios["detection_lower_bound"] else ""
    table.caption = (
        f"(a)/(d) throughput {ratios['controlled_over_naive']}x;"
        f" (c)/(a) floor over controlled {ratios['floor_over_controlled']}x;"
        f" (d)/(a) runs to first strand {bound}{detection if detection is not None else '-'}x"
    )
    memory = result.get("memory")
    if memory:
        for sample in memory["samples"]:
            table.caption += (
                f"; after {sample['runs']} runs RSS {sample['rss_mb']} MB"
                f" (peak {sample['peak_rss_mb']} MB)"
            )
        if memory["growth_kb_per_run"] is not None:
            table.caption += f" ({memory['growth_kb_per_run']} KB per run)"
    return table


def control_point_line(cost: dict[str, Any]) -> str:
    """What a control point costs with no controller installed, against an empty call."""
    return (
        f"control points, no controller: checkpoint {cost['checkpoint_ns']} ns"
        f" (empty coroutine {cost['empty_coroutine_ns']} ns),"
        f" checkpoint_blocking {cost['checkpoint_blocking_ns']} ns"
        f" (empty function {cost['empty_function_ns']} ns) per call"
    )


def _coverage(group: dict[str, Any]) -> str:
    """Cancel windows covered, out of those the scenario's plans can land in."""
    possible = group.get("windows_possible")
    if possible == []:
        return "-"  # no planned cancel or crash
    if possible is None:
        return str(len(group["windows"])) if group["windows"] else "-"
    return f"{group['windows_covered']}/{len(possible)}"


def print_replay(replayed: Replayed, out: Console) -> None:
    result, trace = replayed.result, replayed.trace
    faults = ", ".join(sorted(f.value for f in trace.faults)) or "none"
    out.print(
        f"[bold]replay[/] {trace.source}: scenario {trace.scenario.name},"
        f" adapter {replayed.adapter} (recorded on {trace.adapter}), faults {faults},"
        f" strategy {trace.strategy}"
    )
    if not trace.controlled:
        out.print("[yellow]note:[/] a jitter trace replays its delays, not its interleaving")
    table = Table(title="timeline", show_lines=False)
    for column in ("t (ms)", "actor", "event", "at", "decision"):
        table.add_column(column, overflow="fold")
    for entry in result.schedule.timeline:
        event = entry["event"]
        at = entry.get("point", entry.get("kind", entry.get("at", "")))
        if event in ("park", "pass") and str(at).split("(")[0] in COMMIT_POINTS:
            event += " (committed)"
        decision = ""
        if entry["event"] == "release":
            step = entry.get("step")
            d = (
                result.schedule.decisions[step]
                if step is not None and step < len(result.schedule.decisions)
                else None
            )
            decision = (
                f"#{step}"
                + (f" of {len(d.enabled)}" if d else "")
                + (f" lands {d.landing}" if d and d.landing else "")
            )
        table.add_row(f"{entry['t'] * 1000:.2f}", entry["actor"], event, str(at or ""), decision)
    out.print(table)
    for number, tape in replayed.tapes.items():
        shown = ", ".join(
            f"{e.seq}:{e.kind}" + (f"({e.body.get('status')})" if e.kind == "final" else "")
            for e in tape
        )
        out.print(f"task {number} tape: [{shown}]")
    if result.schedule.outcome != "settled":
        out.print(f"[red]{result.schedule.outcome}[/]: {result.schedule.problem}")
    for violation in result.violations:
        out.print(f"[red]violation[/] task {result.task_number(violation.task_id)}: {violation}")
    if not result.violations and result.schedule.outcome == "settled":
        out.print("[green]no strand[/]")
    recorded = (
        ", ".join(f"task {t}: {k}" for t, k in replayed.trace.recorded_kinds()) or "no strand"
    )
    verdict = (
        "same as recorded" if replayed.same_outcome else "[yellow]differs from the recording[/]"
    )
    out.print(f"recorded: {recorded}; replayed: {verdict}")
    if replayed.finding is not None:
        out.print(f"[red]cross-adapter finding[/]: {replayed.finding}")
    elif replayed.adapter != trace.adapter:
        out.print(f"cross-adapter: the same outcome on {replayed.adapter} as on {trace.adapter}")
    if replayed.extended:
        out.print(
            "[yellow]note:[/] the run went past the recorded decisions"
            " (first come, first served from there)"
        )


def print_list(
    scenarios: Sequence[Any],
    faults: dict[Any, str],
    strategies: dict[str, str],
    adapters: dict[str, str],
    out: Console,
) -> None:
    table = Table(title="scenarios")
    for column in ("name", "tasks", "runner", "cancels", "catches", "about"):
        table.add_column(column, overflow="fold")
    for s in scenarios:
        cancels = "; ".join(f"{c.when} via {c.via}" for c in s.cancels) or "none"
        runner = f"{s.runner.progress} progress, {s.runner.work} work, {s.runner.outcome}"
        about = " ".join(s.description.split())
        table.add_row(
            s.name,
            str(s.tasks),
            runner,
            cancels,
            ", ".join(f.value for f in s.expect.catches) or "-",
            about[:160],
        )
    out.print(table)
    for title, rows in (
        ("faults", {str(k): v for k, v in faults.items()}),
        ("strategies", strategies),
        ("adapters", adapters),
    ):
        t = Table(title=title)
        t.add_column("name")
        t.add_column("what")
        for name, what in rows.items():
            t.add_row(name, what)
        out.print(t)


def decisions_table(title: str, decisions: Sequence[Decision]) -> Table:
    """Each decision: the actor chosen and the point it left; a deviation from first come,
    first served names the actor that was first."""
    table = Table(title=title, show_lines=False)
    for column in ("step", "actor", "at", "candidates", "first come (if passed over)"):
        table.add_column(column, overflow="fold")
    for d in decisions:
        passed_over = d.enabled[0] if d.enabled and d.actor != d.enabled[0] else ""
        landing = f" lands {d.landing}" if d.landing else ""
        table.add_row(str(d.step), d.actor, d.detail + landing, str(len(d.enabled)), passed_over)
    return table


def print_shrunk(shrunk: Shrunk, out: Console) -> None:
    trace, before, after = shrunk.trace, shrunk.before, shrunk.after
    faults = ", ".join(sorted(f.value for f in trace.faults)) or "none"
    out.print(
        f"[bold]shrink[/] {trace.source}: scenario {trace.scenario.name}, adapter"
        f" {shrunk.adapter}, faults {faults}, recorded by {trace.strategy}"
    )
    for label, result in (("before", before), ("after", after)):
        decisions = result.schedule.decisions
        out.print(
            decisions_table(
                f"{label}: {len(decisions)} decisions, {deviations(decisions)} away from"
                " first come, first served",
                decisions,
            )
        )
        for line in violation_lines(outcome_of(result)):
            out.print(f"[red]violation[/] ({label}) {line}")
    out.print(shrunk_line(shrunk))


def shrunk_line(shrunk: Shrunk) -> str:
    """A shrink in one line: deviations and decisions before and after, the runs it took."""
    before, after = shrunk.before, shrunk.after
    return (
        f"deviations {deviations(before.schedule.decisions)} -> "
        f"{deviations(after.schedule.decisions)}, decisions {len(before.schedule.decisions)} ->"
        f" {len(after.schedule.decisions)}, same strands ({describe_kinds(kinds_of(after))});"
        f" Hypothesis made {shrunk.runs} runs (seed {shrunk.seed})"
    )


def print_exploration(exploration: Exploration, out: Console) -> None:
    faults = ", ".join(sorted(f.value for f in exploration.faults)) or "none"
    table = Table(
        title=f"racetape explore: {exploration.adapter}, faults {faults}, seed {exploration.seed}"
    )
    for column in ("strands", "shape", "decisions", "deviations", "scenario", "trace"):
        table.add_column(column, overflow="fold")
    for finding in exploration.findings:
        decisions = finding.result.schedule.decisions
        table.add_row(
            ", ".join(finding.kinds),
            describe_shape(finding.scenario),
            str(len(decisions)),
            str(deviations(decisions)),
            str(finding.scenario_path or "-"),
            str(finding.trace_path or "-"),
        )
    out.print(table)
    out.print(exploration_verdict(exploration))


def exploration_verdict(exploration: Exploration) -> str:
    verdict = f"{len(exploration.findings)} failure(s)" if exploration.findings else "no failure"
    return (
        f"{verdict} in {exploration.generated} generated examples (at most"
        f" {exploration.examples}), {exploration.runs} runs with shrinking"
    )
