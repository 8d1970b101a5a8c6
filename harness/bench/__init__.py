"""``racetape bench``: the seed's race measured four ways, side by side, in one process.

Per adapter, on the late-progress race (a runner with two progress writes, cancelled while the
first is in flight):

* (a) controlled: racetape's controlled mode, ``random`` strategy, fault-free and with
  ``no-terminal-guard``;
* (b) jitter: racetape's jitter mode on the same scenario;
* (c) floor: the store calls one such run makes (create, two status writes, three appends, the
  oracle's two reads), executed bare through the adapter's SQL primitives: no manager, no
  threads, no harness, no control points;
* (d) naive: the cancel test the way the seed's tests were written: submit, await a
  ``started = asyncio.Event()`` the runner sets first, cancel, wait for the task; repeated in a
  loop with no control, the tapes judged after the loop once every thread has drained.

With the fault on, (a), (b) and (d) also report runs to the first strand: the median over
``seeds`` repeats (seeds for (a) and (b); independent loops for (d), which has no seed), each
given at most ``runs`` runs. Ratios: throughput (a)/(d), floor over controlled (c)/(a), and
detection (d)/(a) in runs to the first strand (a lower bound when (d) found nothing).

The throughput figures are measured in interleaved rounds (a share of each figure's runs in
turn), so a change in the machine's load falls on all of them alike. Every share runs in an
event loop of its own on fresh connections, after a few untimed warm-up runs, so no figure pays
for another's threads or connection set-up. Timing is wall clock and depends on the machine and
its load (the document records the load average); the runs-to-first-strand figures of (a) do
not (they are seeded and controlled). Postgres runs use racetape's session settings
(:data:`harness.adapters.PG_SESSION`), as ``racetape run`` does.

The package's modules: :mod:`~harness.bench.workloads` (one run of each kind),
:mod:`~harness.bench.timing` (interleaved timing, runs to the first strand, ratios),
:mod:`~harness.bench.points` (a control point's cost with no controller),
:mod:`~harness.bench.memory` (RSS over a long job), :mod:`~harness.bench.scaling` (a run's cost
over a long job, ``--scaling``), :mod:`~harness.bench.unmodified` (code with no control point)
and :mod:`~harness.bench.document` (the whole bench and its JSON document).
"""

from harness.bench.document import run_bench
from harness.bench.memory import memory_profile
from harness.bench.points import control_point_cost
from harness.bench.timing import FIGURE_KEYS, Figure, bench_adapter
from harness.bench.workloads import GUARD_OFF, NaiveLoop, bare_run, naive_loop

__all__ = [
    "FIGURE_KEYS",
    "GUARD_OFF",
    "Figure",
    "NaiveLoop",
    "bare_run",
    "bench_adapter",
    "control_point_cost",
    "memory_profile",
    "naive_loop",
    "run_bench",
]
