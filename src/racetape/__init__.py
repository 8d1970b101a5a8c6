"""racetape: deterministic race reproduction for asyncio code, as a library.

The engine lives in private modules (``racetape._engine``, ``racetape._control``, ...); what this
module lists in ``__all__`` is the public API. ``racetape.pytest_plugin`` is the pytest plugin
(entry point ``pytest11``).
"""

from racetape._control import point, point_blocking

__all__ = ["point", "point_blocking"]
