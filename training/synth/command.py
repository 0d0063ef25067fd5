"""The `mobstream generate` command: writes the built-in synthetic city (or cities) to disk."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Optional

import typer

from mobstream.settings import opt

log = logging.getLogger("mobstream.generate")


def generate(
    cities: str = opt("A", "synth_cities", "Cities to write, letters from ABCD (B, C, D get 25%, 20%, 6% of --users, like LYMob-4Cities)."),
    users: int = opt(6000, "synth_users", "Users in city A."),
    days: int = opt(28, "synth_days", "Days per city (day d has weekday d % 7, 0 = Monday)."),
    seed: int = opt(0, "synth_seed", "Random seed; the same settings give byte-identical files."),
    out: Optional[Path] = opt(None, "synth_out", "Output folder (default: the data dir's synth/, MOBSTREAM_DATA_DIR)."),
    gzip: bool = opt(False, "synth_gzip", "Write city*_challengedata.csv.gz instead of plain CSV."),
    mask_users: float = opt(0.05, "synth_mask_users", "Share of users (the last uids) whose last days are masked as (999, 999)."),
    mask_days: Optional[int] = opt(None, "synth_mask_days", "Days masked for those users (default: the last 20% of --days, as HuMob)."),
    force: bool = opt(False, "synth_force", "Rewrite cities whose files exist (by default an up-to-date city is skipped)."),
    workers: int = opt(min(os.cpu_count() or 1, 4), "synth_workers", "Worker processes (the output does not depend on it)."),
) -> None:
    """Write the synthetic city in the YJMob100K / HuMob schema, with its POI file and planted labels."""
    from tqdm import tqdm

    from mobstream.paths import data_dir
    from training.synth.generate import SynthSettings
    from training.synth.generate import generate as run

    st = SynthSettings(
        out=out if out is not None else data_dir() / "synth", seed=seed, cities=cities.upper(), users=users,
        days=days, mask_users=mask_users, mask_days=mask_days, gzip=gzip, force=force, workers=workers,
    )
    t0 = time.perf_counter()
    result = run(st, progress_factory=lambda total: tqdm(total=total, unit="user", desc="generate", disable=None))
    for city in result["skipped"]:
        typer.echo(f"city {city}: up to date in {st.out} (use --force to rewrite)")
    for city in result["written"]:
        c = result["meta"]["cities"][city]
        typer.echo(
            f"city {city}: {c['params']['users']} users x {st.days} days, {c['rows']:,} rows -> "
            f"{st.out / c['files']['records']}"
        )
    if result["written"]:
        typer.echo(f"done in {time.perf_counter() - t0:.1f} s")


def register(app: typer.Typer) -> None:
    app.command(name="generate")(generate)
