"""Many runs: groups of (scenario, adapter, faults, strategy), seeded, sharded, spread over workers.

The names the rest of the harness and its tests use, in :data:`__all__`; the code is in
:mod:`harness.runner.runs`.
"""

from harness.runner.runs import (
    DATABASE_LOST,
    WORKER_LOST,
    BudgetCut,
    DatabaseLost,
    EnvironmentFault,
    Group,
    GroupResult,
    Job,
    Progress,
    RunRecord,
    Settings,
    WorkerLost,
    mode_for,
    run_exhaustive,
    run_groups,
    run_indices,
    run_jobs,
    spread_jobs,
)

__all__ = [
    "DATABASE_LOST",
    "WORKER_LOST",
    "BudgetCut",
    "DatabaseLost",
    "EnvironmentFault",
    "Group",
    "GroupResult",
    "Job",
    "Progress",
    "RunRecord",
    "Settings",
    "WorkerLost",
    "mode_for",
    "run_exhaustive",
    "run_groups",
    "run_indices",
    "run_jobs",
    "spread_jobs",
]
