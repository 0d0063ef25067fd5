"""Registers the online subcommands (services, worker, replay, demo)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    # Each command lives in the module that owns it; add one line per command.
    from stream import services_cli

    app.add_typer(services_cli.app, name="services")
    from stream import commands

    app.command("worker")(commands.worker)
    app.command("replay")(commands.replay)
