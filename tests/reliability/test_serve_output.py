"""What `prefixgate serve` prints about its database: never a password."""

from __future__ import annotations

from gateway.cli.serve import shown_url


def test_serve_never_prints_a_database_password() -> None:
    shown = shown_url("postgresql+psycopg://gw:s3cr3t-pw@db.internal:5432/prefixgate")
    assert "s3cr3t-pw" not in shown and "db.internal:5432/prefixgate" in shown
    assert shown_url("sqlite:///data/prefixgate.db") == "sqlite:///data/prefixgate.db"
