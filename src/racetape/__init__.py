"""racetape: deterministic race reproduction for asyncio code, as a library.

The engine lives in private modules (``racetape._engine``, ``racetape._control``, ...); this
module will pull the public API together in ``__all__``. ``racetape.pytest_plugin`` is the
pytest plugin (entry point ``pytest11``).
"""
