"""`prefixgate audit verify|export|public-key` over a real database and export file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli.main import main
from tenants.audit_signing import AuditSigner
from tenants.database import Database
from tenants.server_key import load_or_create_private_key
from tests.tenants.audit_support import Attacker, audit_db, build_chain

__all__ = ["audit_db"]


@pytest.fixture
def signed(audit_db: Database, db_url: str, tmp_path: Path) -> Any:
    key_file = tmp_path / "audit_signing_key.pem"
    signer = AuditSigner(load_or_create_private_key(key_file), every=4)
    build_chain(audit_db, 10, signer).flush()
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(main, ["audit", *args], catch_exceptions=False)

    return invoke, db_url, key_file


def test_verify_ok_then_broken(signed: Any, audit_db: Database) -> None:
    invoke, url, key_file = signed
    result = invoke("verify", "--db", url, "--key-file", str(key_file), "--checkpoint-every", "4")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["records"] == 10 and report["signed_through"] == 10
    Attacker(audit_db).set_field(7, prompt_tokens=1)
    result = invoke("verify", "--db", url, "--key-file", str(key_file), "--checkpoint-every", "4")
    assert result.exit_code == 1
    assert "audit chain broken at record 7" in result.stderr
    assert json.loads(result.stdout)["first_broken"] == 7


def test_export_then_offline_verify(signed: Any, tmp_path: Path) -> None:
    invoke, url, key_file = signed
    out = tmp_path / "audit.jsonl"
    result = invoke("export", "--db", url, "--out", str(out))
    assert result.exit_code == 0 and json.loads(result.stderr)["records"] == 10
    pem = tmp_path / "audit_public.pem"
    result = invoke("public-key", "--key-file", str(key_file))
    assert result.exit_code == 0 and result.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    pem.write_text(result.stdout)
    result = invoke("verify", "--file", str(out), "--public-key", str(pem),
                    "--checkpoint-every", "4")
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    out.write_text("\n".join(line for line in lines if '"seq":5,' not in line) + "\n")
    result = invoke("verify", "--file", str(out), "--public-key", str(pem),
                    "--checkpoint-every", "4")
    assert result.exit_code == 1 and "record 5" in result.stderr


def test_verify_without_a_key_is_refused(signed: Any, tmp_path: Path) -> None:
    invoke, url, _ = signed
    result = invoke("verify", "--db", url, "--key-file", str(tmp_path / "missing.pem"))
    assert result.exit_code == 2 and "no public key" in result.stderr
    result = invoke("verify", "--db", url, "--public-key", "bm90IGEga2V5", "--since", "nope")
    assert result.exit_code == 2


def test_sign_backlog_command(audit_db: Database, db_url: str, tmp_path: Path) -> None:
    build_chain(audit_db, 9, None)
    key_file = tmp_path / "data" / "audit_signing_key.pem"
    runner = CliRunner()
    result = runner.invoke(main, ["audit", "sign-backlog", "--db", db_url, "--key-file",
                                  str(key_file), "--checkpoint-every", "4"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checkpoints_signed"] == 2 and key_file.exists()
    result = runner.invoke(main, ["audit", "verify", "--db", db_url, "--key-file", str(key_file),
                                  "--checkpoint-every", "4"])
    assert result.exit_code == 0, result.output
