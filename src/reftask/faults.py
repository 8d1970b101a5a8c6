"""Named faults: switches that put back known bugs, so racetape can prove it finds them.

The default is no fault. Each fault is honoured by exactly one component: the store for
``no-terminal-guard`` and ``unlocked-append``, the manager for the others. The first five come
from the seed and its review; ``restart-skips-unfinalized`` is the bug racetape's crash scenario
found in the reference manager itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Fault(StrEnum):
    NO_TERMINAL_GUARD = "no-terminal-guard"
    PRESTART_CANCEL_STRAND = "prestart-cancel-strand"
    FINAL_BEFORE_STATUS = "final-before-status"
    DOUBLE_FINAL_ON_LATE_CANCEL = "double-final-on-late-cancel"
    UNLOCKED_APPEND = "unlocked-append"
    RESTART_SKIPS_UNFINALIZED = "restart-skips-unfinalized"


FAULT_DESCRIPTIONS: dict[Fault, str] = {
    Fault.NO_TERMINAL_GUARD: (
        "append_event keeps a non-final event on a terminal row (seed bug 1: a late progress "
        "write lands after final)"
    ),
    Fault.PRESTART_CANCEL_STRAND: (
        "a cancel that lands before the run opens its try leaves the row PENDING with no final "
        "(seed bug 2)"
    ),
    Fault.FINAL_BEFORE_STATUS: (
        "the manager appends final before it commits the terminal status, so a late write slips "
        "in after final"
    ),
    Fault.DOUBLE_FINAL_ON_LATE_CANCEL: (
        "a cancel after the task began finishing is not ignored: it appends a second, "
        "contradictory final (or cuts the first one off)"
    ),
    Fault.UNLOCKED_APPEND: (
        "append_event reads max(seq) and inserts without the append lock, so concurrent appends "
        "can duplicate a seq"
    ),
    Fault.RESTART_SKIPS_UNFINALIZED: (
        "restart_cleanup repairs only PENDING and RUNNING rows, so a crash between the terminal "
        "status and final leaves a finished row with no final forever (found by racetape)"
    ),
}


class UnknownFaultError(ValueError):
    """A fault name that does not exist. The message lists the valid ones."""


def fault_set_label(faults: Iterable[str]) -> str:
    """A fault set's name in labels and file names: sorted, ``+``-joined; ``no-faults`` if empty."""
    return "+".join(sorted(str(f) for f in faults)) or "no-faults"


def parse_faults(names: Iterable[str]) -> frozenset[Fault]:
    """Turn fault names into a fault set; raises UnknownFaultError naming the valid ones."""
    faults: set[Fault] = set()
    for name in names:
        try:
            faults.add(Fault(name))
        except ValueError:
            valid = ", ".join(f.value for f in Fault)
            raise UnknownFaultError(f"unknown fault {name!r}; valid faults: {valid}") from None
    return frozenset(faults)
