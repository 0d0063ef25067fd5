"""`mobstream evaluate flow`: scores FlowLSTM, the linear model and the naive baselines on the held-out slots.

Every model is scored on the same set: each cell occupied at least once in the training period,
at every test slot (the last `test_frac` of slots, as split at training time). The learned models
are run through `FlowForecaster`, the online interface, so the evaluation measures what the
stream would have emitted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.baselines import WEEK_SLOTS, HistoricalAverage, WindowMedian, persistence, seasonal_naive
from models.flows import CHANNELS
from models.slots import SLOTS_PER_DAY, WINDOW_SLOTS
from mobstream.settings import opt
from training.exceptions import TrainingError
from training.flow_build import CACHE_OPT, CITY_OPT, DATA_OPT, POI_OPT, REBUILD_OPT, FlowBuildSettings, FlowData, build_settings, load_or_build
from training.flow_train import OUT_OPT, Split, scored_cells

log = logging.getLogger(__name__)
CHUNK_CELLS = 65536
REFERENCE = "window_median"  # scored and reported, never counted as the best naive baseline


@dataclass(frozen=True)
class FlowEvalSettings:
    build: FlowBuildSettings
    model_dir: Path = Path("runs/flow")
    plots: bool = True


def metrics(pred: np.ndarray, actual: np.ndarray) -> dict:
    """Per channel MSE, MAE, RMSE over (T, C, 3) arrays."""
    err = pred.astype(np.float64) - actual
    out = {}
    for i, ch in enumerate(CHANNELS):
        mse = float(np.mean(err[..., i] ** 2))
        out[ch] = {"mse": mse, "mae": float(np.mean(np.abs(err[..., i]))), "rmse": mse**0.5}
    return out


def forecast(forecaster, data: FlowData, cells: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(T, C, 3) forecasts, one `predict` call per target slot over all scored cells, as the stream does."""
    out = np.empty((len(targets), len(cells), 3), dtype=np.float32)
    for i, t in enumerate(targets):
        win = data.counts[t - WINDOW_SLOTS : t][:, cells].transpose(1, 0, 2)  # (C, 8, 3) oldest first
        out[i] = forecaster.predict(win, data.slot0 + int(t) - 1, data.cells[cells])
    return out


def predictions(s: FlowEvalSettings, data: FlowData, split: Split, cells: np.ndarray, targets: np.ndarray, forecasters: dict) -> tuple[dict, list[str]]:
    """Every model's (T, C, 3) forecasts; notes for baselines that cannot be computed."""
    preds, notes = {}, []
    for kind, f in forecasters.items():
        preds[kind] = forecast(f, data, cells, targets)
    preds["persistence"] = persistence(data.counts, targets)[:, cells]
    preds["seasonal_day"] = seasonal_naive(data.counts, targets, SLOTS_PER_DAY)[:, cells]
    if targets.min() >= WEEK_SLOTS:
        preds["seasonal_week"] = seasonal_naive(data.counts, targets, WEEK_SLOTS)[:, cells]
    else:
        notes.append(f"seasonal_week skipped: the test period starts {targets.min()} slots into the data, less than a week")
    ha = HistoricalAverage.fit(data.counts[: split.test_start][:, cells], data.slot0)
    preds["historical_average"] = ha.predict(targets, data.slot0)
    # Not a naive baseline (it is fitted like a model): how far an 8-slot pattern can take any model.
    train = np.arange(WINDOW_SLOTS, split.test_start)
    preds[REFERENCE] = WindowMedian.fit(data.counts[:, cells], train).predict(data.counts[:, cells], targets)
    notes.append(f"{REFERENCE}: per pattern (8-slot occupancy capped at 3, last slot's inflow/outflow > 0) the median next count "
                 "over the slots before the test period; a fitted reference, not a naive baseline")
    return preds, notes


def _load(s: FlowEvalSettings, data: FlowData) -> dict:
    from models.flow_forecaster import FlowForecaster

    out = {}
    for kind in ("flow_lstm", "flow_linear"):
        f = FlowForecaster.load(s.model_dir / f"{kind}.pt")  # its own POI table, as online
        if f.extra.get("data_fingerprint") != data.meta["fingerprint"]:
            raise TrainingError(
                f"{s.model_dir / kind}.pt was trained on {f.extra.get('source')} (fingerprint {f.extra.get('data_fingerprint')}), "
                f"not on {s.build.data} ({data.meta['fingerprint']}): its test period would not be held out"
            )
        out[kind] = f
    return out


def evaluate(s: FlowEvalSettings) -> dict:
    """Score all models on the held-out period; write report.json, report.md and figures to model_dir."""
    data = load_or_build(s.build)
    forecasters = _load(s, data)
    split = Split(**forecasters["flow_lstm"].extra["split"])
    cells = scored_cells(data, split)
    targets = np.arange(split.test_start, split.n_slots)
    actual = data.counts[targets][:, cells].astype(np.float32)
    preds, notes = predictions(s, data, split, cells, targets, forecasters)
    table = {name: metrics(p, actual) for name, p in preds.items()}
    naive = [n for n in table if n not in forecasters and n != REFERENCE]
    best = min(naive, key=lambda n: table[n]["occupancy"]["mae"])
    report = {
        "data": data.meta,
        "split": {"test_slots": [int(data.slot0 + targets[0]), int(data.slot0 + targets[-1])], "test_slot_count": int(len(targets))},
        "scored_cells": int(len(cells)),
        "scored": "cells occupied at least once in the training period, at every test slot",
        "versions": {k: f.version for k, f in forecasters.items()},
        "metrics": table,
        "best_naive_occupancy_mae": {"model": best, "mae": table[best]["occupancy"]["mae"]},
        "lstm_over_best_naive_occupancy_mae": table["flow_lstm"]["occupancy"]["mae"] / max(table[best]["occupancy"]["mae"], 1e-12),
        "notes": notes,
    }
    s.model_dir.mkdir(parents=True, exist_ok=True)
    (s.model_dir / "report.json").write_text(json.dumps(report, indent=2))
    (s.model_dir / "report.md").write_text(markdown(report))
    if s.plots:
        from training.flow_plots import error_by_time_of_day, maps

        report["figures"] = [
            str(maps(s.model_dir / "maps.png", data, cells, targets, actual, preds["flow_lstm"])),
            str(error_by_time_of_day(s.model_dir / "error_by_time_of_day.png", data.slot0 + targets, actual, preds)),
        ]
        (s.model_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def markdown(r: dict) -> str:
    head = "| model | " + " | ".join(f"{c} {m}" for c in CHANNELS for m in ("MAE", "RMSE", "MSE")) + " |"
    rows = [head, "|---" * (1 + 3 * len(CHANNELS)) + "|"]
    for name, m in r["metrics"].items():
        rows.append(f"| {name} | " + " | ".join(f"{m[c][k]:.4f}" for c in CHANNELS for k in ("mae", "rmse", "mse")) + " |")
    d = r["data"]
    lines = [
        f"# Flow forecast evaluation: city {d['city']}",
        "",
        f"Data: `{d['source']}` (fingerprint {d['fingerprint']}), {d['n_slots']} slots x {d['n_cells']} active cells.",
        f"Test slots {r['split']['test_slots'][0]}..{r['split']['test_slots'][1]} ({r['split']['test_slot_count']}); "
        f"scored: {r['scored_cells']} {r['scored']}.",
        "",
        *rows,
        "",
        f"Best naive baseline on occupancy MAE: {r['best_naive_occupancy_mae']['model']} "
        f"({r['best_naive_occupancy_mae']['mae']:.4f}); FlowLSTM / best naive = {r['lstm_over_best_naive_occupancy_mae']:.3f}.",
        *(f"- {n}" for n in r["notes"]),
    ]
    return "\n".join(lines) + "\n"


def command(
    data: Path = DATA_OPT,
    poi: Path = POI_OPT,
    city: str = CITY_OPT,
    cache_dir: Path = CACHE_OPT,
    rebuild: bool = REBUILD_OPT,
    model_dir: Path = OUT_OPT,
    plots: bool = opt(True, "flow_plots", "Write the PNG figures (maps and error by time of day)."),
) -> None:
    """Score FlowLSTM, the linear model and naive baselines on the held-out period; write report.md/json and PNGs."""
    import typer

    r = evaluate(FlowEvalSettings(build_settings(data, poi, city, cache_dir, rebuild), Path(model_dir), plots))
    typer.echo(markdown(r))
    typer.echo(f"report: {Path(model_dir) / 'report.md'}")
