"""Registers the offline subcommands (generate, data-report, train, evaluate, embed)."""

from __future__ import annotations

import typer

train_app = typer.Typer(help="Train a model offline (flow forecaster or trajectory encoder).", no_args_is_help=True)
evaluate_app = typer.Typer(help="Evaluate a trained model on held-out data beside honest baselines.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    # Each command lives in the module that owns it; add one line per command (lazy heavy imports
    # inside the command functions keep `mobstream --help` fast).
    app.add_typer(train_app, name="train")
    app.add_typer(evaluate_app, name="evaluate")
    from training import flow_build, flow_eval, flow_train

    app.command("flow-build")(flow_build.command)
    train_app.command("flow")(flow_train.command)
    evaluate_app.command("flow")(flow_eval.command)
    from training.synth.command import register as register_generate; register_generate(app)  # noqa: E702
    from training.report_cli import data_report  # light module: DuckDB is imported inside the command
    app.command("data-report")(data_report)
    from training.encoder_train import train_command as train_encoder; train_app.command("encoder")(train_encoder)  # noqa: E702
    from training.encoder_eval import evaluate_command as eval_encoder; evaluate_app.command("encoder")(eval_encoder)  # noqa: E702
    from training.embed import embed_command; app.command("embed")(embed_command)  # noqa: E702
    from training.nextloc_eval import command as eval_nextloc; evaluate_app.command("nextloc")(eval_nextloc)  # noqa: E702
