"""Every fault is a live switch: each one turns the checks it targets red, on both adapters."""

from __future__ import annotations

import pytest

from reftask.faults import Fault, UnknownFaultError, parse_faults
from tests import checks
from tests.conftest import StoreFactory

CASES = [
    (fault, check, broken)
    for fault, pairs in checks.FAULT_CHECKS.items()
    for check, broken in pairs
]


def test_every_fault_has_checks() -> None:
    assert set(checks.FAULT_CHECKS) == set(Fault)
    assert all(checks.FAULT_CHECKS[f] for f in Fault)


@pytest.mark.parametrize(
    ("fault", "check", "broken"), CASES, ids=[f"{f.value}-{c.__name__}" for f, c, _ in CASES]
)
async def test_fault_turns_check_red(
    store_factory: StoreFactory, fault: Fault, check: checks.Check, broken: str
) -> None:
    with pytest.raises(AssertionError, match=broken):
        await check(store_factory, (fault,))


def test_parse_faults() -> None:
    assert parse_faults(["no-terminal-guard", "unlocked-append"]) == {
        Fault.NO_TERMINAL_GUARD,
        Fault.UNLOCKED_APPEND,
    }
    assert parse_faults([]) == frozenset()


def test_unknown_fault_names_the_valid_ones() -> None:
    with pytest.raises(UnknownFaultError) as info:
        parse_faults(["no-such-fault"])
    message = str(info.value)
    assert "'no-such-fault'" in message
    assert all(f.value in message for f in Fault)
    assert "\n" not in message
