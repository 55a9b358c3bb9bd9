"""`prefixgate serve`: run the gateway; works with no configuration at all.

Defaults: data dir ./data, SQLite file under it, the tiny local model under data/model
(written with the engine's init-tiny writer if missing), CPU when there is no GPU. Every flag
is also a `PREFIXGATE_<NAME>` variable. Runs the DB migrations, loads the model (progress
bar), prints where it listens and the admin token (in full only when it was just generated,
so restarts do not spill it into logs), then serves with uvicorn.
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.settings import Settings


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

    try:
        settings = Settings.from_env(**flags)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    configured = bool(settings.admin_token)
    settings, generated = settings.with_admin_token()
    _ensure_model(settings)
    click.echo(f"database: {settings.resolved_db_url} (migrating to head)")
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
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)


def _ensure_model(settings: Settings) -> None:
    model_dir = settings.resolved_model_dir
    if (model_dir / "config.json").exists():
        return
    if settings.model_dir is not None:
        raise click.UsageError(f"no checkpoint (config.json) in {model_dir}")
    from engine.tiny_model import write_tiny_model

    click.echo(f"no model in {model_dir}: writing the tiny local model (init-tiny) ...")
    write_tiny_model(model_dir)
