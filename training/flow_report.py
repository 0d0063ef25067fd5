"""The flow report's parts beside the score tables: calibration, reliability bins, the targets' verdicts, and report.md."""

from __future__ import annotations

import numpy as np

from models.flows import CHANNELS

NAIVE = ("persistence", "seasonal_day", "seasonal_week", "historical_average")
# Forecast bins of the reliability plot (people per cell), finer where most forecasts lie.
BINS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, np.inf)
BIAS_LIMIT_PCT = 5.0


def calibration(pred: np.ndarray, actual: np.ndarray) -> dict:
    """(T, C) forecasts and actuals: the sum of forecasts against the sum of actuals, per slot and in total, as bias %."""
    fs, acts = pred.sum(axis=1, dtype=np.float64), actual.sum(axis=1, dtype=np.float64)  # (T,) each
    seen = acts > 0
    per_slot = 100.0 * (fs[seen] - acts[seen]) / acts[seen]
    total = float(acts.sum())
    return {
        "total_pct": 100.0 * float(fs.sum() - total) / total if total > 0 else None,
        "per_slot_median_pct": float(np.median(per_slot)) if len(per_slot) else None,
        "per_slot_median_abs_pct": float(np.median(np.abs(per_slot))) if len(per_slot) else None,
        "per_slot_p95_abs_pct": float(np.percentile(np.abs(per_slot), 95)) if len(per_slot) else None,
    }


def reliability(pred: np.ndarray, actual: np.ndarray) -> list[dict]:
    """Per forecast bin: how many (cell, slot) forecasts, their mean, and the mean actual count (a calibrated
    forecast has mean_actual = mean_forecast in every bin)."""
    p, a = pred.ravel().astype(np.float64), actual.ravel().astype(np.float64)
    at = np.digitize(p, BINS[1:-1])  # bin index 0..len(BINS)-2
    n = np.bincount(at, minlength=len(BINS) - 1)
    sp = np.bincount(at, weights=p, minlength=len(BINS) - 1)
    sa = np.bincount(at, weights=a, minlength=len(BINS) - 1)
    return [{"lo": BINS[i], "hi": BINS[i + 1] if np.isfinite(BINS[i + 1]) else None, "n": int(n[i]),
             "mean_forecast": float(sp[i] / n[i]), "mean_actual": float(sa[i] / n[i])} for i in range(len(n)) if n[i]]


def target_summary(r: dict) -> dict:
    """The issue's targets on occupancy RMSE: h=1 <= 0.85 x the best naive and <= 0.95 x linear; the last
    horizon better than every naive baseline; FlowLSTM's total bias within +-5 % at every horizon."""
    first, last = r["metrics"]["1"]["occupancy"], r["metrics"][str(r["horizons"][-1])]["occupancy"]
    naive1 = [n for n in NAIVE if n in first]
    best = min(naive1, key=lambda n: first[n]["rmse"])
    lstm1 = first["flow_lstm"]["rmse"]
    biases = {h: r["bias"][h]["flow_lstm"]["total_pct"] for h in r["bias"]}
    out = {
        "h1_best_naive": best,
        "h1_lstm_over_best_naive_rmse": lstm1 / max(first[best]["rmse"], 1e-12),
        "h1_lstm_over_linear_rmse": lstm1 / max(first["flow_linear"]["rmse"], 1e-12),
        "last_h_lstm_over_best_naive_rmse": last["flow_lstm"]["rmse"] / min(last[n]["rmse"] for n in NAIVE if n in last),
        "lstm_total_bias_pct": biases,
    }
    out["met"] = {
        "h1_vs_naive": out["h1_lstm_over_best_naive_rmse"] <= 0.85,
        "h1_vs_linear": out["h1_lstm_over_linear_rmse"] <= 0.95,
        "last_h_vs_every_naive": out["last_h_lstm_over_best_naive_rmse"] < 1.0,
        "bias": all(b is not None and abs(b) <= BIAS_LIMIT_PCT for b in biases.values()),
    }
    return out


def _rows(tables: dict) -> list[str]:
    head = "| model | " + " | ".join(f"{c} {m}" for c in CHANNELS for m in ("RMSE", "MAE", "dev")) + " | occ bias % |"
    rows = [head, "|---" * (2 + 3 * len(CHANNELS)) + "|"]
    for name in tables[CHANNELS[0]]:
        vals = " | ".join(f"{tables[c][name][k]:.4f}" for c in CHANNELS for k in ("rmse", "mae", "poisson_deviance"))
        bias = tables[CHANNELS[0]][name]["bias_pct"]
        rows.append(f"| {name} | {vals} | {'-' if bias is None else f'{bias:+.1f}'} |")
    return rows


def markdown(r: dict) -> str:
    d, t = r["data"], r["targets"]
    lines = [
        f"# Flow forecast evaluation: city {d['city']}",
        "",
        f"Data: `{d['source']}` (fingerprint {d['fingerprint']}), {d['n_slots']} slots x {d['n_cells']} active cells.",
        f"Test slots {r['split']['test_slots'][0]}..{r['split']['test_slots'][1]} ({r['split']['test_slot_count']}); "
        f"scored: {r['scored_cells']} {r['scored']}. dev = mean Poisson deviance.",
    ]
    for h in map(str, r["horizons"]):
        for title, key in (("all scored cells", "metrics"), (f"busiest {r['busiest_cells']} cells (10 %)", "busiest")):
            lines += ["", f"## h={h} ({30 * int(h)} min ahead), {title}", "", *_rows(r[key][h])]
    lines += ["", "## Calibration (occupancy, FlowLSTM): sum of forecasts vs sum of actuals", "",
              "| h | total bias % | per-slot median bias % | per-slot median abs % | per-slot p95 abs % |", "|---|---|---|---|---|"]
    for h, b in r["bias"].items():
        c = b["flow_lstm"]
        lines.append(f"| {h} | {c['total_pct']:+.2f} | {c['per_slot_median_pct']:+.2f} | {c['per_slot_median_abs_pct']:.2f} | {c['per_slot_p95_abs_pct']:.2f} |")
    lines += [
        "",
        f"Targets (occupancy RMSE): h=1 FlowLSTM / best naive ({t['h1_best_naive']}) = {t['h1_lstm_over_best_naive_rmse']:.3f} "
        f"(<= 0.85: {t['met']['h1_vs_naive']}); / linear = {t['h1_lstm_over_linear_rmse']:.3f} (<= 0.95: {t['met']['h1_vs_linear']}); "
        f"h={r['horizons'][-1]} / best naive = {t['last_h_lstm_over_best_naive_rmse']:.3f} (< 1: {t['met']['last_h_vs_every_naive']}); "
        f"total bias within +-5 %: {t['met']['bias']}.",
        *(f"- {n}" for n in r["notes"]),
    ]
    return "\n".join(lines) + "\n"
