"""The README's first screen: what racetape is, how to install it, the plugin on one's own tests,
the repository's two commands; its links to docs/ resolve."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_first_forty_lines_install_and_race_a_users_own_tests() -> None:
    first = "\n".join(README.splitlines()[:40])
    assert "pip install" in first
    assert "pytest --race-runs" in first
    assert "pytest --race-replay" in first
    assert "@pytest.mark.race(runs=" in first
    assert ".venv/bin/pip install -e '.[dev]' && .venv/bin/racetape run" in first
    assert ".venv/bin/python -m pytest" in first


def test_the_glossary_defines_the_words_before_the_long_material() -> None:
    glossary = README.index("## Glossary")
    for word in ("**strand**", "**tape**", "**window**", "**deviation", "**seed**"):
        assert glossary < README.index(word)
    assert README.index("## Reading the output") < README.index("## Postgres")


def test_links_to_docs_resolve_and_moved_material_lives_there() -> None:
    links = re.findall(r"\]\((docs/[^)#]+)\)", README)
    assert {"docs/hypothesis.md", "docs/result.md", "docs/benchmarks.md"} <= set(links)
    for link in links:
        assert (ROOT / link).is_file(), link
    for doc in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\((\.\./[^)#]+)\)", doc.read_text()):
            assert (doc.parent / target).exists(), (doc.name, target)
