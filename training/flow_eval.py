"""`mobstream evaluate flow`: scores FlowLSTM, the linear model and the naive baselines per horizon on the held-out slots.

Every model is scored on the same set at every horizon h: each cell occupied at least once in the
training period, at every test slot t (the last `test_frac` of slots, as split at training time),
with the forecast made at the close of slot t - h (its window ends there). The learned models run
through `FlowForecaster`, the online interface, so the evaluation measures what the stream would
have emitted. Tables: all scored cells, and the busiest 10 % of them (by mean training occupancy).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.baselines import WEEK_SLOTS, HistoricalAverage, seasonal_naive
from models.flow_scores import scores
from models.flows import CHANNELS
from models.slots import SLOTS_PER_DAY, WINDOW_SLOTS
from mobstream.settings import opt
from training.exceptions import TrainingError
from training.flow_build import CACHE_OPT, CITY_OPT, DATA_OPT, POI_OPT, REBUILD_OPT, FlowBuildSettings, FlowData, build_settings, load_or_build
from training.flow_report import calibration, markdown, reliability, target_summary
from training.flow_train import OUT_OPT, Split, scored_cells

log = logging.getLogger(__name__)
LEARNED = ("flow_lstm", "flow_linear")
BUSIEST_SHARE = 0.10


@dataclass(frozen=True)
class FlowEvalSettings:
    build: FlowBuildSettings
    model_dir: Path = Path("runs/flow")
    plots: bool = True


def forecast(forecaster, data: FlowData, cells: np.ndarray, targets: np.ndarray, horizons: int) -> np.ndarray:
    """(H, T, C, 3): row [h-1, i] is the forecast for targets[i] made at the close of targets[i] - h, one
    `predict` call per closing slot over all scored cells, as the stream does."""
    out = np.empty((horizons, len(targets), len(cells), 3), dtype=np.float32)
    t0 = int(targets[0])
    for end in range(t0 - horizons, int(targets[-1])):  # every closing slot whose forecasts reach a target
        win = data.counts[end - WINDOW_SLOTS + 1 : end + 1][:, cells].transpose(1, 0, 2)  # (C, 8, 3) oldest first
        pred = forecaster.predict(win, data.slot0 + end, data.cells[cells])  # (C, H', 3)
        for h in range(1, horizons + 1):
            if t0 <= end + h <= targets[-1]:
                out[h - 1, end + h - t0] = pred[:, h - 1]
    return out


def naive(data: FlowData, split: Split, cells: np.ndarray, targets: np.ndarray, h: int, ha: HistoricalAverage) -> tuple[dict, list[str]]:
    """The naive baselines' (T, C, 3) forecasts at horizon h: all of them known at the close of t - h."""
    preds, notes = {"persistence": seasonal_naive(data.counts, targets, h)[:, cells]}, []
    preds["seasonal_day"] = seasonal_naive(data.counts, targets, SLOTS_PER_DAY)[:, cells]
    if targets.min() >= WEEK_SLOTS:
        preds["seasonal_week"] = seasonal_naive(data.counts, targets, WEEK_SLOTS)[:, cells]
    else:
        notes.append(f"seasonal_week skipped: the test period starts {targets.min()} slots into the data, less than a week")
    preds["historical_average"] = ha.predict(targets, data.slot0)
    return preds, notes


def _load(s: FlowEvalSettings, data: FlowData) -> dict:
    from models.flow_forecaster import FlowForecaster

    out = {}
    for kind in LEARNED:
        f = FlowForecaster.load(s.model_dir / f"{kind}.pt")  # its own POI table, as online
        if f.extra.get("data_fingerprint") != data.meta["fingerprint"]:
            raise TrainingError(
                f"{s.model_dir / kind}.pt was trained on {f.extra.get('source')} (fingerprint {f.extra.get('data_fingerprint')}), "
                f"not on {s.build.data} ({data.meta['fingerprint']}): its test period would not be held out"
            )
        out[kind] = f
    return out


def table(preds: dict, actual: np.ndarray) -> dict:
    """channel -> model -> scores over (T, C, 3) arrays."""
    return {ch: {name: scores(p[..., i], actual[..., i]) for name, p in preds.items()} for i, ch in enumerate(CHANNELS)}


def evaluate(s: FlowEvalSettings) -> dict:
    """Score all models per horizon on the held-out period; write report.json, report.md and figures to model_dir."""
    data = load_or_build(s.build)
    forecasters = _load(s, data)
    horizons = min(f.horizons for f in forecasters.values())
    split = Split(**forecasters["flow_lstm"].extra["split"])
    cells = scored_cells(data, split)
    busy_n = max(1, int(np.ceil(BUSIEST_SHARE * len(cells))))
    busy = np.argsort(-data.counts[: split.test_start][:, cells, 0].mean(axis=0, dtype=np.float64), kind="stable")[:busy_n]
    targets = np.arange(split.test_start, split.n_slots)
    actual = data.counts[targets][:, cells].astype(np.float32)  # (T, C, 3)
    learned = {kind: forecast(f, data, cells, targets, horizons) for kind, f in forecasters.items()}
    ha = HistoricalAverage.fit(data.counts[: split.test_start][:, cells], data.slot0)
    report = {
        "data": data.meta,
        "split": {"test_slots": [int(data.slot0 + targets[0]), int(data.slot0 + targets[-1])], "test_slot_count": int(len(targets))},
        "scored_cells": int(len(cells)),
        "busiest_cells": busy_n,
        "scored": "cells occupied at least once in the training period, at every test slot; horizon h: the forecast made at slot t - h",
        "versions": {k: f.version for k, f in forecasters.items()},
        "horizons": list(range(1, horizons + 1)),
        "metrics": {}, "busiest": {}, "bias": {}, "reliability": {}, "notes": [],
    }
    totals = {"actual": actual[..., 0].sum(axis=1)}
    for h in range(1, horizons + 1):
        preds, notes = naive(data, split, cells, targets, h, ha)
        preds = {kind: learned[kind][h - 1] for kind in LEARNED} | preds
        report["metrics"][str(h)] = table(preds, actual)
        report["busiest"][str(h)] = table({k: p[:, busy] for k, p in preds.items()}, actual[:, busy])
        report["bias"][str(h)] = {k: calibration(p[..., 0], actual[..., 0]) for k, p in preds.items()}
        report["reliability"][str(h)] = reliability(preds["flow_lstm"][..., 0], actual[..., 0])
        totals[f"flow_lstm h={h}"] = preds["flow_lstm"][..., 0].sum(axis=1)
        report["notes"] = sorted(set(report["notes"]) | set(notes))
    report["targets"] = target_summary(report)
    s.model_dir.mkdir(parents=True, exist_ok=True)
    if s.plots:
        from training.flow_plots import calibration_plot, error_by_time_of_day, maps

        h1 = {kind: learned[kind][0] for kind in LEARNED} | naive(data, split, cells, targets, 1, ha)[0]
        report["figures"] = [
            str(maps(s.model_dir / "maps.png", data, cells, targets, actual, h1["flow_lstm"])),
            str(error_by_time_of_day(s.model_dir / "error_by_time_of_day.png", data.slot0 + targets, actual, h1)),
            str(calibration_plot(s.model_dir / "reliability.png", report["reliability"], data.slot0 + targets, totals)),
        ]
    (s.model_dir / "report.json").write_text(json.dumps(report, indent=2))
    (s.model_dir / "report.md").write_text(markdown(report))
    return report


def command(
    data: Path = DATA_OPT,
    poi: Path = POI_OPT,
    city: str = CITY_OPT,
    cache_dir: Path = CACHE_OPT,
    rebuild: bool = REBUILD_OPT,
    model_dir: Path = OUT_OPT,
    plots: bool = opt(True, "flow_plots", "Write the PNG figures (maps, error by time of day, reliability and totals)."),
) -> None:
    """Score FlowLSTM, the linear model and naive baselines per horizon on the held-out period; write report.md/json and PNGs."""
    import typer

    r = evaluate(FlowEvalSettings(build_settings(data, poi, city, cache_dir, rebuild), Path(model_dir), plots))
    typer.echo(markdown(r))
    typer.echo(f"report: {Path(model_dir) / 'report.md'}")
