"""Controls for the env-name checks: the readers are found from code and can say no."""

from __future__ import annotations

import pytest

from tests.deploy.gateway_env import (
    DB_UPGRADE,
    SERVE,
    all_command_paths,
    any_command_reads,
    command_reads,
    resolve_command,
)

SERVE_NAMES = ["PREFIXGATE_PORT", "PREFIXGATE_HOST", "PREFIXGATE_DB", "PREFIXGATE_DB_URL",
               "PREFIXGATE_MODEL", "PREFIXGATE_KV_FRACTION"]


@pytest.mark.parametrize("name", SERVE_NAMES)
def test_serve_reads_its_settings(name: str) -> None:
    assert command_reads(SERVE, name)


@pytest.mark.parametrize("name", ["PREFIXGATE_PORTT", "PREFIXGATE_DATABASE_URL", "PORT"])
def test_unknown_names_are_not_read(name: str) -> None:
    assert not command_reads(SERVE, name)
    assert not any_command_reads(name)


def test_db_upgrade_reads_only_the_database_url() -> None:
    assert command_reads(DB_UPGRADE, "PREFIXGATE_DB_URL")
    assert not command_reads(DB_UPGRADE, "PREFIXGATE_ADMIN_TOKEN")


def test_direct_environ_lookups_are_found() -> None:
    """`prefixgate audit verify` reads the signing key through os.environ, not an option."""
    assert command_reads(("audit", "verify"), "PREFIXGATE_AUDIT_SIGNING_KEY")


def test_command_tree_is_walked() -> None:
    paths = all_command_paths()
    assert SERVE in paths and DB_UPGRADE in paths
    with pytest.raises(KeyError):
        resolve_command(("db", "downgrade-everything"))
