"""Gateway settings: one frozen dataclass, filled from `PREFIXGATE_*` variables and CLI flags.

Every field has an embedded default (SQLite under ./data, the shipped demo model
models/prefixgate-demo — or the tiny local model under ./data/model without it —, CPU when
there is no GPU), so `prefixgate serve` runs with no configuration.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tenants.audit_signing import DEFAULT_CHECKPOINT_EVERY
from tenants.server_key import KEY_FILE_NAME

ENV_PREFIX = "PREFIXGATE_"
# The embedded default model trained by bench/train_demo_model.py, shipped in the repository.
DEMO_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "prefixgate-demo"
# Short names matching the CLI flags (--model, --db) are accepted too.
_ENV_ALIASES = {"model_dir": "MODEL", "db_url": "DB"}
ADMIN_TOKEN_FILE = "admin_token"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway process needs to start. Paths are resolved against the cwd."""

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    model_dir: Path | None = None  # None: <data_dir>/model (created with init-tiny if missing)
    db_url: str | None = None  # None: sqlite:///<data_dir>/prefixgate.db
    device: str = "auto"
    kv_fraction: float = 0.9
    kv_gib: float | None = None
    admin_token: str | None = None  # None: read from <data_dir>/admin_token or generated
    max_num_seqs: int = 64
    max_queue: int = 256
    queue_timeout_s: float = 30.0
    default_max_tokens: int = 256
    max_n: int = 8
    auth_cache_ttl_s: float = 1.0
    log_level: str = "warning"
    # OTLP/HTTP collector for request traces (e.g. http://otel-collector:4318); None: no tracing.
    otlp_endpoint: str | None = None
    # Audit signing key: PEM or base64 text, else the key file (None: <data_dir>/
    # audit_signing_key.pem, generated with mode 0600 on first start).
    audit_signing_key: str | None = field(default=None, repr=False)
    audit_signing_key_file: Path | None = None
    audit_checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    # Where rate-limit buckets live: "local" (this process), "db" or "redis" (shared by replicas).
    rate_limit_store: str = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if not 0.0 < self.kv_fraction <= 1.0:
            raise ValueError(f"kv_fraction must be in (0, 1], got {self.kv_fraction}")
        if self.kv_gib is not None and self.kv_gib <= 0:
            raise ValueError(f"kv_gib must be > 0, got {self.kv_gib}")
        if self.default_max_tokens < 1 or self.max_n < 1:
            raise ValueError("default_max_tokens and max_n must be >= 1")
        if self.audit_checkpoint_every < 1:
            raise ValueError(
                f"audit_checkpoint_every must be >= 1, got {self.audit_checkpoint_every}"
            )

    @property
    def resolved_model_dir(self) -> Path:
        """The configured model; else the shipped demo model; else <data_dir>/model (tiny)."""
        if self.model_dir is not None:
            return self.model_dir
        if (DEMO_MODEL_DIR / "config.json").is_file():
            return DEMO_MODEL_DIR
        return self.data_dir / "model"

    @property
    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'prefixgate.db'}"

    @property
    def resolved_audit_key_file(self) -> Path:
        return self.audit_signing_key_file or self.data_dir / KEY_FILE_NAME

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `PREFIXGATE_<NAME>` variables, then explicit (non-None) overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None and f.name in _ENV_ALIASES:
                raw = env.get(ENV_PREFIX + _ENV_ALIASES[f.name])
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_admin_token(self) -> tuple[Settings, bool]:
        """Settings with an admin token: the configured one, the stored one, or a new one.

        A generated token is written to <data_dir>/admin_token (mode 0600) so a restart keeps
        it. Returns (settings, generated).
        """
        if self.admin_token:
            return self, False
        path = self.data_dir / ADMIN_TOKEN_FILE
        if path.exists():
            return replace(self, admin_token=path.read_text().strip()), False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        token = "pga_" + secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        return replace(self, admin_token=token), True


_INT = {"port", "max_num_seqs", "max_queue", "default_max_tokens", "max_n",
        "audit_checkpoint_every"}
_FLOAT = {"kv_fraction", "kv_gib", "queue_timeout_s", "auth_cache_ttl_s"}
_PATH = {"data_dir", "model_dir", "audit_signing_key_file"}


def _parse(name: str, raw: str) -> Any:
    try:
        if name in _INT:
            return int(raw)
        if name in _FLOAT:
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a number") from exc
    if name in _PATH:
        return Path(raw)
    return raw
