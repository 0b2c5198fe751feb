"""TOML configuration files whose sections supply defaults for the CLI's subcommands.

A file such as::

    [synth]
    preset = "tiny"
    seed = 3

    [shards.build]
    workers = 4

maps section names to (sub)commands and keys to option names. Values are type-checked
with the option's own Click type, and any unknown section or key is an error that names
it, so a typo never silently falls back to a default. Flags given on the command line
always win over the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import click


class ConfigError(click.UsageError):
    """A configuration file that cannot be used, with the reason and the fix."""


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning syntax errors into a ConfigError that names the file."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} does not exist") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err


def _normalise(name: str) -> str:
    return name.replace("-", "_")


def _option_params(command: click.Command) -> dict[str, click.Parameter]:
    return {
        _normalise(p.name): p
        for p in command.params
        if isinstance(p, click.Option) and p.name is not None
    }


def build_default_map(
    group: click.Group, table: dict[str, Any], source: str, section: str = ""
) -> dict[str, Any]:
    """Validate `table` against `group`'s subcommands; return a Click `default_map`."""
    default_map: dict[str, Any] = {}
    commands = {_normalise(name): (name, cmd) for name, cmd in group.commands.items()}
    for key, value in table.items():
        where = f"{section}.{key}" if section else key
        if _normalise(key) not in commands:
            known = ", ".join(sorted(group.commands)) or "none"
            raise ConfigError(
                f"{source}: unknown section [{where}]; sections name commands: {known}"
            )
        name, command = commands[_normalise(key)]
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{where}] must be a table of option = value")
        if isinstance(command, click.Group):
            default_map[name] = build_default_map(command, value, source, where)
        else:
            default_map[name] = _command_defaults(command, value, source, where)
    return default_map


def _command_defaults(
    command: click.Command, table: dict[str, Any], source: str, section: str
) -> dict[str, Any]:
    params = _option_params(command)
    ctx = click.Context(command)
    defaults: dict[str, Any] = {}
    for key, value in table.items():
        param = params.get(_normalise(key))
        if param is None:
            known = ", ".join(sorted(k.replace("_", "-") for k in params))
            raise ConfigError(f"{source}: unknown key '{key}' in [{section}]; valid keys: {known}")
        try:
            param.type_cast_value(ctx, value)
        except click.BadParameter as err:
            raise ConfigError(f"{source}: [{section}] {key} = {value!r}: {err.message}") from err
        defaults[param.name] = value
    return defaults
