"""The `mobstream` command: one typer app, each subcommand registered from the package that owns it.

Subcommand modules keep heavy imports (torch, faust, duckdb) inside their functions so that
`mobstream --help` and light commands start fast.
"""

from __future__ import annotations

import logging
import sys

import typer

from mobstream.errors import MobstreamError

app = typer.Typer(
    name="mobstream",
    help="Streaming human-mobility processor: replay pings into Kafka, keep windows in Redis, "
    "forecast flows and embed trajectories live, train and evaluate the models offline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the mobstream version."""
    from mobstream import __version__

    typer.echo(__version__)


def _register() -> None:
    # One line per command group; each module owns its own options and help.
    from training import cli as training_cli
    from stream import cli as stream_cli

    training_cli.register(app)
    stream_cli.register(app)
    from mobstream.demo import demo

    app.command("demo")(demo)
    from dashboard import command as dashboard_command

    app.command("dashboard")(dashboard_command.dashboard)


@app.callback()
def _root() -> None:
    """Streaming human-mobility processor. Every setting is also a MOBSTREAM_* environment variable."""


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _register()
    try:
        app(args=argv)
    except MobstreamError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
