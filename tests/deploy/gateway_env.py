"""Which environment variables prefixgate really reads, found from its code, not from a list.

Three readers exist: `Settings.from_env` (what `prefixgate serve` runs on), the click options of
each command (`envvar=`), and direct `os.environ` / `os.getenv` look-ups in a command's module.
A deploy file that sets any other PREFIXGATE_* name sets something nothing reads.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from functools import cache
from pathlib import Path

import click

from gateway.cli.main import main as cli_root
from gateway.settings import Settings

SERVE = ("serve",)
DB_UPGRADE = ("db", "upgrade")
# Values that every Settings field either parses differently from its default or rejects.
_PROBES = ("7", "sentinel")


def settings_reads(name: str) -> bool:
    """True when setting `name` changes (or is rejected by) `Settings.from_env`."""
    baseline = Settings.from_env({})
    for probe in _PROBES:
        try:
            if Settings.from_env({name: probe}) != baseline:
                return True
        except ValueError:
            return True
    return False


def resolve_command(path: tuple[str, ...]) -> click.Command:
    """The click command that `prefixgate <path...>` runs; KeyError if there is none."""
    command: click.Command = cli_root
    for word in path:
        if not isinstance(command, click.Group) or word not in command.commands:
            raise KeyError(f"`prefixgate {' '.join(path)}` is not a command")
        command = command.commands[word]
    return command


def option_envvars(path: tuple[str, ...], param_name: str | None = None) -> set[str]:
    """Env names the options of `prefixgate <path...>` (and its groups) read."""
    names: set[str] = set()
    for depth in range(len(path) + 1):
        for param in resolve_command(path[:depth]).params:
            if param.envvar and param_name in (None, param.name):
                envvar = param.envvar
                names.update([envvar] if isinstance(envvar, str) else envvar)
    return names


def environ_lookups(path: tuple[str, ...]) -> set[str]:
    """Names the module of `prefixgate <path...>` reads through os.environ / os.getenv."""
    callback = resolve_command(path).callback
    assert callback is not None
    source = Path(inspect.getfile(importlib.import_module(callback.__module__))).read_text()
    return _literal_lookups(ast.parse(source))


def _literal_lookups(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        key: ast.expr | None = None
        if isinstance(node, ast.Subscript) and _is_environ(node.value):
            key = node.slice
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            is_get = node.func.attr == "get" and _is_environ(node.func.value)
            is_getenv = node.func.attr == "getenv"
            key = node.args[0] if is_get or is_getenv else None
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            found.add(key.value)
    return found


def _is_environ(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def command_reads(path: tuple[str, ...], name: str) -> bool:
    """Whether `prefixgate <path...>` reads environment variable `name`."""
    if path == SERVE and settings_reads(name):
        return True
    return name in option_envvars(path) or name in environ_lookups(path)


@cache
def all_command_paths() -> tuple[tuple[str, ...], ...]:
    """Every leaf command of the `prefixgate` CLI, e.g. ("serve",), ("audit", "verify")."""
    paths: list[tuple[str, ...]] = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(command, click.Group):
            for word, sub in command.commands.items():
                walk(sub, (*path, word))
        else:
            paths.append(path)

    walk(cli_root, ())
    return tuple(paths)


def any_command_reads(name: str) -> bool:
    """Read by some `prefixgate` command (an operator may `exec` it in the gateway container)."""
    return any(command_reads(path, name) for path in all_command_paths())
