"""Many runs: groups of (scenario, adapter, faults, strategy), seeded, sharded, spread over workers.

The names the rest of the harness and its tests use are in :data:`__all__`. The modules:
:mod:`~harness.campaign.model` (a group, the settings, a run's record, the exceptions that end
runs), :mod:`~harness.campaign.seeds` (a shard's run indices, the mode a run's seed gives it),
:mod:`~harness.campaign.runs` (a group's runs on one database: the budget's cut, the wait for a
database that went away), :mod:`~harness.campaign.pool` (jobs in this process or over worker
processes) and :mod:`~harness.campaign.groups` (every group's runs, their results and traces).
"""

from harness.campaign.groups import (
    DATABASE_LOST,
    WORKER_LOST,
    GroupResult,
    Progress,
    run_groups,
    spread_jobs,
)
from harness.campaign.model import (
    BudgetCut,
    DatabaseLost,
    EnvironmentFault,
    Group,
    RunRecord,
    Settings,
    WorkerLost,
)
from harness.campaign.pool import Job, run_jobs
from harness.campaign.runs import run_exhaustive, run_indices
from harness.campaign.seeds import mode_for

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
