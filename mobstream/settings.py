"""Helpers that keep every CLI setting and its MOBSTREAM_* environment variable in one declaration."""

from __future__ import annotations

from typing import Any

import typer

ENV_PREFIX = "MOBSTREAM_"


def env(name: str) -> str:
    """The environment variable of a setting: env("redis_url") -> "MOBSTREAM_REDIS_URL"."""
    return ENV_PREFIX + name.upper().replace("-", "_")


def opt(default: Any, name: str, help: str, *decls: str, **kw: Any) -> Any:
    """A typer option whose value may also come from MOBSTREAM_<NAME>; --help shows the variable.

    `decls` name the flags when the parameter name is not enough, e.g. "--strict/--lenient".
    """
    return typer.Option(default, *decls, help=help, envvar=env(name), show_envvar=True, **kw)
