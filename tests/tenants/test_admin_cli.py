"""`prefixgate tenant|key|prompt ...`: thin JSON wrappers over the services."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli.main import main
from tenants import Authenticator
from tenants.database import Database
from tenants.migrate import upgrade


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(main, [*args, "--db", url])
        assert (result.exit_code == 0) is ok, result.output
        return json.loads(result.stdout if ok else result.stderr)

    invoke.url = url  # type: ignore[attr-defined]
    return invoke


def test_tenant_key_prompt_lifecycle(cli: Any, tmp_path: Path) -> None:
    tenant = cli("tenant", "create", "acme", "--cache-policy", "user", "--tokens-per-min", "900")
    assert tenant["cache_policy"] == "user" and tenant["quotas"]["tokens_per_min"] == 900
    assert [t["id"] for t in cli("tenant", "list")] == [tenant["id"]]

    issued = cli("key", "issue", tenant["id"], "--name", "ci")
    db = Database.from_url(cli.url)
    assert Authenticator(db).authenticate(issued["key"]).tenant_id == tenant["id"]
    [listed] = cli("key", "list", tenant["id"])
    assert listed["id"] == issued["id"] and "key" not in listed
    rotated = cli("key", "rotate", tenant["id"], issued["id"])
    assert rotated["id"] != issued["id"]
    assert cli("key", "revoke", tenant["id"], rotated["id"])["revoked_at"] is not None

    text = tmp_path / "sys.txt"
    text.write_text("Hello {{user_name}}", encoding="utf-8")
    prompt = cli("prompt", "register", tenant["id"], "sys", "--file", str(text))
    assert (prompt["version"], prompt["variables"]) == (1, ["user_name"])
    assert cli("prompt", "retire", tenant["id"], "sys", "1")["retired_at"] is not None
    assert len(cli("prompt", "list", tenant["id"])) == 1

    assert cli("tenant", "suspend", tenant["id"])["status"] == "suspended"
    assert cli("tenant", "get", tenant["id"])["status"] == "suspended"
    assert cli("tenant", "delete", tenant["id"])["id"] == tenant["id"]
    db.dispose()


def test_errors_are_json_on_stderr(cli: Any) -> None:
    assert cli("tenant", "get", "ten_missing", ok=False)["error"]["type"] == "not_found"
    cli("tenant", "create", "acme")
    assert cli("tenant", "create", "acme", ok=False)["error"]["type"] == "conflict"
    assert cli("tenant", "create", "bad name", ok=False)["error"]["type"] == "invalid"
    assert cli("tenant", "create", "x", "--max-kv-share", "2", ok=False)["error"]["type"] == (
        "invalid")


def test_unmigrated_database_is_reported(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["tenant", "list", "--db", f"sqlite:///{tmp_path}/new.db"])
    assert result.exit_code == 1
    assert json.loads(result.stderr)["error"]["type"] == "database_error"
