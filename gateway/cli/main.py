"""Entry point of the `prefixgate` console script; wires the command groups together."""

from __future__ import annotations

import importlib

import click

# Command groups, each in its own module exposing a click command named `cli`.
# A group appears here only once its module exists and does real work.
_GROUPS: dict[str, str] = {
    "serve": "gateway.cli.serve",
    "model": "gateway.cli.model",
    "db": "gateway.cli.db",
    "tenant": "gateway.cli.tenant",
    "key": "gateway.cli.key",
    "prompt": "gateway.cli.prompt",
    "audit": "gateway.cli.audit",
    "usage": "gateway.cli.usage",
    "top": "gateway.cli.top",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="prefixgate")
def main() -> None:
    """prefixgate: a multi-tenant prefix-cache gateway for LLM serving."""


def _register() -> None:
    for name, module_name in _GROUPS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        main.add_command(module.cli, name=name)


_register()
