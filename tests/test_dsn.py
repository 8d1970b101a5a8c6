"""DSNs are parsed and validated in one place, and no password is ever printed or stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.pgserver import PostgresServer
from reftask.dsn import DsnError, parse_dsn, redact_dsn

BAD_DSNS = [
    ("postgresql://postgres@127.0.0.1:abc/postgres", "port: 'abc'"),
    ("postgresql://postgres@127.0.0.1:70000/postgres", "port: '70000'"),
    ("postgresql://postgres@127.0.0.1/postgres?sslmode=sometimes", "sslmode: 'sometimes'"),
    ("mysql://root@127.0.0.1/db", "scheme: 'mysql'"),
    ("host=127.0.0.1 port=x", "port: 'x'"),
    ("host=127.0.0.1 colour=blue", "colour: unknown parameter"),
    ("just garbage", "dsn: 'just garbage' is neither"),
    ("", "dsn: empty"),
]


@pytest.mark.parametrize(("dsn", "part"), BAD_DSNS)
def test_a_bad_dsn_is_one_line_naming_the_part(dsn: str, part: str) -> None:
    with pytest.raises(DsnError, match=f"^--pg-dsn: {part}"):
        parse_dsn(dsn, "--pg-dsn")


def test_both_forms_parse_to_the_same_url_and_a_password_keeps_its_at_and_colon() -> None:
    url = parse_dsn("postgresql://u:p@ss:w/rd@db.example:6543/app?sslmode=require")
    pairs = parse_dsn("host=db.example port=6543 user=u password='p@ss:w/rd' dbname=app"
                      " sslmode=require")  # fmt: skip
    assert url == pairs
    assert url.password == "p@ss:w/rd"
    assert url.url() == "postgresql://u:p%40ss%3Aw%2Frd@db.example:6543/app?sslmode=require"
    assert "p@ss" not in url.redacted()
    assert "***" in url.redacted()


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://u:s3cret@h/db",
        "postgresql://u:s3c@ret@h/db",
        "--pg-dsn=postgresql://u:s3cret@h/db",
        "postgresql://u@h/db?sslmode=require&password=s3cret",
        "host=h password=s3cret user=u",
        "host=h password='s3 cret' user=u",
        "cannot reach Postgres at postgresql://u:s3cret@h:1/db: refused",
    ],
)
def test_redaction_removes_the_password_from_any_text(text: str) -> None:
    redacted = redact_dsn(text)
    assert "s3" not in redacted
    assert "cret" not in redacted
    assert "***" in redacted


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(("dsn", "part"), BAD_DSNS)
def test_run_and_stress_refuse_a_bad_dsn_before_any_work(
    dsn: str, part: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    for command in (
        ["run", "--adapter", "postgres", "--runs", "1", "--json", str(out)],
        ["stress", "--runs", "1", "--out", str(tmp_path / "stress")],
    ):
        assert main([*command, "--pg-dsn", dsn]) == 2
        assert f"racetape: error: --pg-dsn: {part}" in _error_line(capsys)
    assert not out.exists()


def test_the_environment_dsn_is_checked_and_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RACETAPE_PG_DSN", "postgresql://h:99999/db")
    assert main(["run", "--adapter", "postgres", "--runs", "1"]) == 2
    assert "racetape: error: RACETAPE_PG_DSN: port: '99999'" in _error_line(capsys)


@pytest.fixture(scope="module")
def failing_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("trace")
    main(["run", "--scenario", "late-progress", "--fault", "no-terminal-guard", "--runs", "20",
          "--json", str(folder / "r.json"), "--traces", str(folder / "traces")])  # fmt: skip
    return next((folder / "traces").rglob("*.json"))


def test_replay_and_shrink_refuse_a_bad_dsn_in_one_line(
    failing_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    for command in (["replay"], ["shrink", "--out", str(tmp_path / "s.json")]):
        code = main([*command, str(failing_trace), "--adapter", "postgres",
                     "--pg-dsn", "postgresql://u:pw@h:0/db"])  # fmt: skip
        assert code == 2
        line = _error_line(capsys)
        assert "--pg-dsn: port: '0'" in line
        assert "pw" not in line


def test_an_unreachable_dsn_error_prints_no_password(capsys: pytest.CaptureFixture[str]) -> None:
    dsn = "postgresql://postgres:hunter2@127.0.0.1:1/postgres?password=hunter3"
    assert main(["run", "--adapter", "postgres", "--runs", "1", "--pg-dsn", dsn]) == 2
    line = _error_line(capsys)
    assert "cannot reach Postgres" in line
    assert "hunter" not in line


@pytest.mark.postgres
def test_a_password_with_at_and_colon_connects_and_is_stored_nowhere(
    postgres_server: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The servers racetape tests against trust local connections, so any password connects:
    # what is checked is that "p@ss:w" reaches asyncpg as a password, not as part of the host.
    parsed = parse_dsn(postgres_server.dsn)
    host, port = parsed.hosts[0]
    dsn = f"postgresql://postgres:p@ss:w0rd@{host}:{port}/postgres"
    out = tmp_path / "r.json"
    code = main(["run", "--scenario", "late-progress", "--adapter", "postgres", "--runs", "2",
                 "--pg-dsn", dsn, "--json", str(out), "--traces", str(tmp_path / "t")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    doc: dict[str, Any] = json.loads(out.read_text())
    assert doc["totals"]["runs"] == 2
    assert "w0rd" not in out.read_text()
    assert "postgres:***@" in doc["command"]
    markdown = tmp_path / "r.md"
    assert main(["report", str(out), "--markdown", str(markdown)]) == 0
    assert "w0rd" not in markdown.read_text()
    assert "***" in markdown.read_text()
    assert "w0rd" not in capsys.readouterr().out


def test_a_result_written_with_a_password_renders_without_it(tmp_path: Path) -> None:
    from harness.results import load_result

    result = tmp_path / "r.json"
    main(["run", "--scenario", "late-progress", "--runs", "1", "--json", str(result)])
    doc = json.loads(result.read_text())
    doc["command"] = "racetape run --pg-dsn postgresql://u:hunter2@h/db"
    result.write_text(json.dumps(doc))
    assert load_result(result)["command"] == "racetape run --pg-dsn postgresql://u:***@h/db"
