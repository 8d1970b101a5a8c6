"""racetape's reference commands, one module per subcommand: each adds its parser (``add``)
and holds its handler; :mod:`harness.commands.common` holds what they share, and
:mod:`harness.cli` builds the whole parser from them and dispatches."""
