"""A found race as a permanent test: a standalone pytest file that replays one trace.

The file embeds the whole trace (scenario, decisions, recorded outcome), so it needs nothing
but an installed racetape, and it imports only the public
:func:`harness.check_recorded_interleaving` (in ``harness.__all__``), so no move of the modules
behind it breaks a committed test. It replays the recorded decisions on the chosen adapter and
asserts the invariant: the run settles and no task is stranded. The faults it switches on are the
recorded ones unless ``RACETAPE_FAULTS`` names others (``none`` for none): as emitted it fails
on the faulty manager, and passes on a manager fixed so that interleaving strands nothing
(``RACETAPE_FAULTS=none`` shows the fixed reference manager).

Where the code no longer allows the recorded interleaving (a fix that takes a lock makes the
recorded order impossible), the replay follows the recording as far as it can, goes on first
come, first served, warns where it left the recording, and judges that run: a fix passes, and
the warning says the test now exercises a neighbouring interleaving.
"""

from __future__ import annotations

import pprint
from pathlib import Path

import jinja2

from harness.files import read_json
from harness.traces import TraceError, describe_kinds, trace_from_dict


def emit_test(
    trace_path: Path, *, adapter: str | None = None, test_path: Path | None = None
) -> str:
    """The source of a pytest file replaying the trace at ``trace_path`` (on ``adapter``, default
    the recorded one); ``test_path`` is where it will be written, for its usage lines."""
    document = read_json(trace_path, TraceError, "trace")
    trace = trace_from_dict(document, str(trace_path))  # validates: the file must replay
    if not trace.controlled:
        raise TraceError(
            f"{trace_path}: strategy: a jitter trace fixes delays, not an interleaving;"
            " emit a test from a controlled trace (random, pct or exhaustive)"
        )
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=False,  # Python source, not markup
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    recorded = describe_kinds(trace.recorded_kinds())
    name = test_path.name if test_path is not None else "test_race.py"
    return environment.get_template("regression_test.py.j2").render(
        source=str(trace_path),
        test_name=name,
        scenario=trace.scenario.name,
        adapter=adapter or trace.adapter,
        recorded_adapter=trace.adapter,
        faults=", ".join(sorted(f.value for f in trace.faults)) or "none",
        decisions=len(trace.decisions),
        recorded=recorded,
        trace_literal=pprint.pformat(document, width=96, sort_dicts=False),
    )
