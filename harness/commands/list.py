"""``racetape list``: scenarios, faults, strategies and adapters."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from harness import display
from harness.adapters import REGISTRY
from harness.commands.common import STRATEGY_HELP, Subcommands
from harness.scenario import find_scenarios
from reftask.faults import FAULT_DESCRIPTIONS

ADAPTER_HELP = {adapter.name: adapter.help for adapter in REGISTRY.values()}


def add(commands: Subcommands) -> None:
    lst = commands.add_parser("list", help="scenarios, faults, strategies and adapters")
    lst.set_defaults(handler=_list)


def _list(args: argparse.Namespace, argv: Sequence[str]) -> int:
    display.print_list(
        find_scenarios(), FAULT_DESCRIPTIONS, STRATEGY_HELP, ADAPTER_HELP, display.console()
    )
    return 0
