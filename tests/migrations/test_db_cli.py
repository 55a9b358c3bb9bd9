"""`prefixgate db upgrade`: --db, PREFIXGATE_DB_URL, and the default file under ./data."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from gateway.cli.main import main


def _tables(path: Path) -> set[str]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_with_flag_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    flagged = tmp_path / "nested" / "flag.db"
    result = runner.invoke(main, ["db", "upgrade", "--db", f"sqlite:///{flagged}"])
    assert result.exit_code == 0, result.output
    assert "tenants" in _tables(flagged)
    from_env = tmp_path / "env.db"
    monkeypatch.setenv("PREFIXGATE_DB_URL", f"sqlite:///{from_env}")
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    assert "audit_records" in _tables(from_env)


def test_default_url_is_data_dir_under_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFIXGATE_DB_URL", raising=False)
    monkeypatch.delenv("PREFIXGATE_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "api_keys" in _tables(tmp_path / "data" / "prefixgate.db")
