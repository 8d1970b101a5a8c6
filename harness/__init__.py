"""racetape's harness: the scenario engine, its strategies, the strand oracle, the runner and CLI.

The engine drives the named control points of :mod:`reftask.control`; it knows nothing of SQLite
or Postgres. The runner and CLI are thin layers over the library API that the tests call directly.
"""
