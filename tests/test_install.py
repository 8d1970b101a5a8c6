"""racetape installed as a user installs it: ``pip install .`` (not editable) into a fresh
virtualenv, run from an empty folder, far from the checkout. The catalog must come with it
(package data), the console script must dispatch, and the public API must import.

The fresh virtualenv borrows this one's third-party packages (a path file naming its
site-packages, which does not run that folder's own path files, so the editable racetape of
this checkout stays out) and installs racetape itself with ``--no-deps`` (this venv's pip,
``--python`` the fresh one; the build backend from the configured index): the test checks what
racetape's own wheel holds, which is the point.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import racetape

PROJECT = Path(__file__).resolve().parent.parent
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "reports")


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_a_plain_install_runs_the_catalog_from_an_empty_folder(tmp_path: Path) -> None:
    home = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(home)
    python = home / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    empty = tmp_path / "empty"
    empty.mkdir()
    # Built from a copy: setuptools builds in the source folder (build/, *.egg-info), and a
    # stale build/ there would put modules since deleted into the wheel.
    source = tmp_path / "source"
    shutil.copytree(PROJECT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", str(source)],
        cwd=empty,
        env=env,
    )  # fmt: skip

    where = _run([str(python), "-c", "import racetape; print(racetape.__file__)"], empty, env)
    assert Path(where.strip()).is_relative_to(site), "the checkout's racetape was imported"
    api = _run([str(python), "-c", "import racetape; print(racetape.__all__)"], empty, env)
    assert api.strip() == str(racetape.__all__)

    script = str(home / "bin" / "racetape")
    catalog = sorted(p.stem for p in (PROJECT / "harness" / "scenarios").glob("*.toml"))
    assert len(catalog) >= 10
    found = (
        "from harness.scenario import find_scenarios; print(*[s.name for s in find_scenarios()])"
    )
    assert sorted(_run([str(python), "-c", found], empty, env).split()) == catalog
    listed = _run([script, "list"], empty, env)  # rich wraps long names in its table: two short
    assert "late-progress" in listed
    assert "cancel-anywhere" in listed
    out = empty / "reports"
    _run(
        [script, "run", "--scenario", "late-progress", "--runs", "50", "--json",
         str(out / "result.json"), "--traces", str(out / "traces")],
        cwd=empty,
        env=env,
    )  # fmt: skip
    result = (out / "result.json").read_text()
    assert '"runs": 50' in result
    assert sorted(p.name for p in empty.iterdir()) == ["reports"]  # nothing else written
    assert sys.prefix != str(home)


HEAVY = ("matplotlib", "scipy", "numpy", "jinja2", "asyncpg", "aiosqlite")
RACED = """
import asyncio

import pytest


@pytest.mark.race(runs=3)
async def test_to_thread_race():
    events = []
    task = asyncio.create_task(asyncio.to_thread(events.append, "write"))
    await asyncio.sleep(0)
    events.append("final")
    await task
    assert events[-1] == "final", events
"""


def test_the_library_and_its_plugin_load_none_of_the_extras() -> None:
    """A plain install has none of the extras ('harness': the stores' drivers; 'report': the
    HTML page's): importing racetape and its pytest plugin must not need them."""
    probe = (
        "import sys, racetape, racetape.pytest_plugin, racetape._stats, racetape._result;"
        f" print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]"


def test_the_plugin_races_a_test_without_the_extras_and_the_cli_names_the_missing_one(
    tmp_path: Path,
) -> None:
    """The extras' packages made unimportable (None in sys.modules): the plugin still finds a
    race under both modes, and a harness command says which extra to install, in one line."""
    (tmp_path / "test_race.py").write_text(RACED)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    block = f"import sys; sys.modules.update(dict.fromkeys({HEAVY!r}));"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for extra in ([], ["--race-mode", "jitter", "--race-runs", "30"]):
        ran = subprocess.run(
            [sys.executable, "-c", f"{block} import pytest; sys.exit(pytest.main(sys.argv[1:]))",
             "-p", "no:cacheprovider", "-q", *extra],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert ran.returncode == 1, ran.stdout + ran.stderr
        assert "racetape race runs" in ran.stdout
        assert "Traceback" not in ran.stderr
    cli = subprocess.run(
        [sys.executable, "-c", f"{block} from racetape.cli import main; sys.exit(main(['list']))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cli.returncode == 2
    assert cli.stderr.strip().splitlines() == [
        "racetape list: needs asyncpg, from the 'harness' extra: pip install 'racetape[harness]'"
    ]
