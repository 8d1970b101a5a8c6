"""Scenario files: the catalog loads, and every mistake is a one-line error naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scenario import ScenarioError, find_scenarios, load_scenario, parse_scenario


def test_the_catalog_loads_and_round_trips() -> None:
    scenarios = find_scenarios()
    assert {"late-progress", "prestart-cancel", "cancel-anywhere"} <= {s.name for s in scenarios}
    for scenario in scenarios:
        assert parse_scenario(scenario.to_toml_dict(), "round-trip") == scenario


BASE = 'name = "s"\ndescription = "d"\n'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "[runner]\nprogres = 2\n",
            "[runner] progres: unknown key; allowed: detached, outcome, progress, work",
        ),
        ('[runner]\nprogress = "two"\n', "[runner] progress: must be an integer >= 0, got 'two'"),
        (
            '[runner]\noutcome = "explode"\n',
            "[runner] outcome: must be one of succeed, fail, raise",
        ),
        ('points = ["append.nope"]\n', "points: unknown point 'append.nope'; known:"),
        ('[[cancel]]\nwhen = "soon"\n', "[cancel 1] when: must be one of before-start"),
        (
            '[[cancel]]\nwhen = "during-progress"\nprogress = 3\n',
            "[cancel 1] progress: the runner makes only 1",
        ),
        ('[[cancel]]\nwhen = "anytime"\ntask = 2\n', "[cancel 1] task: there are only 1 task(s)"),
        (
            '[expect]\ncatches = ["no-such-fault"]\n',
            "[expect] catches: unknown fault 'no-such-fault'",
        ),
        ('colour = "red"\n', "colour: unknown key; allowed: cancel, crash, description, expect"),
        ("tasks = 0\n", "tasks: must be an integer >= 1, got 0"),
        (
            "tasks = 8\n[runner]\nprogress = 3\ndetached = true\n",
            "tasks: 8 task(s) of this runner can hold 33 appends open at once, more than 24",
        ),
    ],
)
def test_bad_scenarios_are_one_line_errors(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(BASE + body)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_not_toml_and_wrong_name(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("name = ")
    with pytest.raises(ScenarioError, match=r"broken.toml: not valid TOML"):
        load_scenario(broken)
    misnamed = tmp_path / "other.toml"
    misnamed.write_text(BASE)
    with pytest.raises(ScenarioError, match=r"name: 's' must match the file name 'other'"):
        load_scenario(misnamed)
