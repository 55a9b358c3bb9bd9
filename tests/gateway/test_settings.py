"""Settings: defaults, PREFIXGATE_* variables, flags, and the persisted admin token."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.settings import DEMO_MODEL_DIR, Settings


def test_defaults_env_and_overrides(tmp_path: Path) -> None:
    s = Settings.from_env({})
    assert s.resolved_model_dir == DEMO_MODEL_DIR  # the shipped demo model
    assert (DEMO_MODEL_DIR / "model.safetensors").is_file()
    assert s.resolved_db_url == "sqlite:///data/prefixgate.db"
    env = {"PREFIXGATE_PORT": "9001", "PREFIXGATE_DATA_DIR": str(tmp_path),
           "PREFIXGATE_KV_GIB": "0.5", "PREFIXGATE_DEVICE": "cpu"}
    s = Settings.from_env(env, port=9002, host=None)
    assert (s.port, s.data_dir, s.kv_gib, s.device, s.host) == (
        9002, tmp_path, 0.5, "cpu", "127.0.0.1")
    assert s.resolved_db_url == f"sqlite:///{tmp_path}/prefixgate.db"


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="PREFIXGATE_PORT"):
        Settings.from_env({"PREFIXGATE_PORT": "eighty"})
    with pytest.raises(ValueError):
        Settings(kv_fraction=1.5)


def test_admin_token_is_generated_once_with_0600(tmp_path: Path) -> None:
    first, generated = Settings(data_dir=tmp_path).with_admin_token()
    assert generated and first.admin_token
    path = tmp_path / "admin_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, generated_again = Settings(data_dir=tmp_path).with_admin_token()
    assert not generated_again and again.admin_token == first.admin_token
    explicit, _ = Settings(data_dir=tmp_path, admin_token="set").with_admin_token()
    assert explicit.admin_token == "set"
