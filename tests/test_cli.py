"""The `mobstream` command: every subcommand's --help works and names its MOBSTREAM_* variables,
and start-up stays light (no torch, faust, duckdb or streamlit import just to parse arguments)."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mobstream import cli

HEAVY = ("torch", "faust", "duckdb", "streamlit", "sklearn")


def test_startup_imports_no_heavy_library():
    code = (
        "import sys, mobstream.cli as c; c._register(); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at CLI start-up: {out.stdout.strip()}"


def _commands():
    cli._register()
    import typer.main

    group = typer.main.get_command(cli.app)
    found = []
    for name, cmd in group.commands.items():
        subs = getattr(cmd, "commands", None)
        if subs:
            found += [(name, sub) for sub in subs]
        else:
            found.append((name,))
    return found


@pytest.mark.parametrize("words", _commands(), ids=" ".join)
def test_every_subcommand_has_help(words):
    result = CliRunner().invoke(cli.app, [*words, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    if words != ("version",):
        assert "MOBSTREAM_" in result.output, f"{' '.join(words)} --help names no MOBSTREAM_* variable"
