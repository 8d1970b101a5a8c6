"""racetape's reference harness around reftask: scenarios, cancel windows, the strand oracle, the
runner, matrix, bench, stress, reports and the CLI.

It drives reftask through racetape's engine (:mod:`racetape`), which knows nothing of reftask,
SQLite or Postgres. The runner and CLI are thin layers over the library API that the tests call
directly.
"""

from harness.regression import check_recorded_interleaving

__all__ = ["check_recorded_interleaving"]
