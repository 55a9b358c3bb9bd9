"""`prefixgate serve`: run the gateway; works with no configuration at all.

Defaults: data dir ./data, SQLite file under it, the tiny local model under data/model
(written with the engine's init-tiny writer if missing), CPU when there is no GPU. Every flag
is also a `PREFIXGATE_<NAME>` variable. Runs the DB migrations, loads the model (progress
bar), prints where it listens and the admin token (in full only when it was just generated,
so restarts do not spill it into logs), then serves with uvicorn.

SIGTERM (and Ctrl-C) drain gracefully: uvicorn stops accepting connections and waits up to
`DRAIN_TIMEOUT_S` for in-flight requests — streams included — to finish (past that they are
cancelled, and each is audited as aborted); then the app's lifespan stops the engine and
signs the audit head, and the process exits 0. Every audit record is committed before its
response completes, so nothing acknowledged is left to flush. uvicorn re-raises the signal
after its shutdown; the handler installed here turns that into a clean exit, and a signal that
arrives before uvicorn listens (during migration or model load) exits at once.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import click

from gateway.settings import Settings

DRAIN_TIMEOUT_S = 30


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)


def shown_url(url: str) -> str:
    """The database URL as printed: a password in it is masked (logs are not secret)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@click.command()
@click.option("--host", help="Interface to listen on [PREFIXGATE_HOST; 127.0.0.1].")
@click.option("--port", type=int, help="Port [PREFIXGATE_PORT; 8000].")
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="Data directory [PREFIXGATE_DATA_DIR; ./data].")
@click.option("--model", "--model-dir", "model_dir", type=click.Path(path_type=Path),
              help="Checkpoint directory [PREFIXGATE_MODEL; <data-dir>/model, tiny model].")
@click.option("--db", "--db-url", "db_url",
              help="Database URL [PREFIXGATE_DB; sqlite:///<data-dir>/prefixgate.db].")
@click.option("--device", help="auto, cpu or cuda[:N] [PREFIXGATE_DEVICE; auto].")
@click.option("--kv-fraction", type=float,
              help="Share of free GPU memory for the KV cache [PREFIXGATE_KV_FRACTION; 0.9].")
@click.option("--kv-gib", type=float, help="KV cache size in GiB [PREFIXGATE_KV_GIB].")
@click.option("--admin-token",
              help="Admin API token [PREFIXGATE_ADMIN_TOKEN; generated once, kept in data dir].")
@click.option("--max-num-seqs", type=int,
              help="Sequences batched at once [PREFIXGATE_MAX_NUM_SEQS; 64].")
@click.option("--log-level", help="uvicorn log level [PREFIXGATE_LOG_LEVEL; warning].")
def cli(**flags: object) -> None:
    """Run the gateway (OpenAI-compatible tenant API + admin API)."""
    import uvicorn

    from engine.async_engine import AsyncEngine
    from gateway.app import create_app, engine_config
    from tenants.migrate import upgrade

    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        settings = Settings.from_env(**flags)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    configured = bool(settings.admin_token)
    settings, generated = settings.with_admin_token()
    _ensure_model(settings)
    click.echo(f"database: {shown_url(settings.resolved_db_url)} (migrating to head)")
    upgrade(settings.resolved_db_url)
    click.echo(f"loading model from {settings.resolved_model_dir} ...")
    engine = AsyncEngine.load(engine_config(settings))
    app = create_app(settings, engine)
    click.echo(
        f"prefixgate listening on http://{settings.host}:{settings.port} "
        f"(model {engine.model_id}, OpenAPI at /schema)"
    )
    token_file = settings.data_dir / "admin_token"
    if generated:
        click.echo(f"admin token (new, stored in {token_file}): {settings.admin_token}")
    elif configured:
        click.echo("admin token: as configured (--admin-token / PREFIXGATE_ADMIN_TOKEN)")
    else:
        click.echo(f"admin token: in {token_file}")
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level,
        timeout_graceful_shutdown=DRAIN_TIMEOUT_S,
    )
    uvicorn.Server(config).run()


def _ensure_model(settings: Settings) -> None:
    model_dir = settings.resolved_model_dir
    if (model_dir / "config.json").exists():
        return
    if settings.model_dir is not None:
        raise click.UsageError(f"no checkpoint (config.json) in {model_dir}")
    from engine.tiny_model import write_tiny_model

    click.echo(f"no model in {model_dir}: writing the tiny local model (init-tiny) ...")
    write_tiny_model(model_dir)
