"""`prefixgate model ...`: model utilities (the tiny offline checkpoint for tests and demos)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def cli() -> None:
    """Model checkpoints."""


@cli.command("init-tiny")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--arch", type=click.Choice(["llama", "qwen2"]), default="llama", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def init_tiny(directory: Path, arch: str, seed: int) -> None:
    """Write a tiny random checkpoint and a locally trained BPE tokenizer to DIRECTORY."""
    from engine.tiny_model import write_tiny_model

    write_tiny_model(directory, arch=arch, seed=seed)
    click.echo(f"wrote a tiny {arch} checkpoint (seed {seed}) to {directory}")
