"""Figures for `evaluate flow`: occupancy maps (actual, forecast, error), error by time of day, reliability and per-slot totals."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.grid import cell_xy
from models.slots import SLOTS_PER_DAY, dt_from_slot, weekday

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)


def _save(plt, fig, path: Path, dpi: int) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def representative(slots: np.ndarray) -> list[int]:
    """Indices of six test slots: a weekday at 03:00, 08:00, 12:00, 18:00, 22:00 and a weekend noon."""
    d, t = dt_from_slot(slots)
    picks = []
    for hour, weekend in ((3, False), (8, False), (12, False), (18, False), (22, False), (12, True)):
        hit = np.flatnonzero((t == hour * 2) & ((weekday(d) >= 5) == weekend))
        if not len(hit):
            hit = np.flatnonzero(t == hour * 2)
        if len(hit):
            picks.append(int(hit[0]))
    return picks or [0]


def maps(path: Path, data, cells: np.ndarray, targets: np.ndarray, actual: np.ndarray, pred: np.ndarray) -> Path:
    """Rows: six slots; columns: actual occupancy, FlowLSTM forecast, forecast - actual; over the scored cells' bounding box."""
    plt = _pyplot()
    size = int(data.meta.get("grid_size", 200))
    x, y = cell_xy(data.cells[cells], size)
    x0, x1, y0, y1 = x.min(), x.max(), y.min(), y.max()
    picks = representative(data.slot0 + targets)
    fig, axes = plt.subplots(len(picks), 3, figsize=(12, 3.6 * len(picks)), squeeze=False)
    for row, i in enumerate(picks):
        d, t = dt_from_slot(int(data.slot0 + targets[i]))
        vmax = max(float(np.percentile(actual[i, :, 0], 99.5)), 1.0)
        for col, (title, values, cmap, lim) in enumerate(
            (("actual", actual[i, :, 0], "viridis", (0, vmax)), ("FlowLSTM", pred[i, :, 0], "viridis", (0, vmax)), ("forecast - actual", pred[i, :, 0] - actual[i, :, 0], "RdBu_r", (-vmax / 2, vmax / 2)))
        ):
            img = np.full((y1 - y0 + 1, x1 - x0 + 1), np.nan)
            img[y - y0, x - x0] = values
            ax = axes[row, col]
            im = ax.imshow(img, origin="lower", cmap=cmap, vmin=lim[0], vmax=lim[1], extent=(x0 - 0.5, x1 + 0.5, y0 - 0.5, y1 + 0.5))
            ax.set_title(f"{title}: day {d} ({DAYS[weekday(d)]}) {t // 2:02d}:{30 * (t % 2):02d}", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("Occupancy per cell (x east, y north)")
    return _save(plt, fig, path, 80)


def error_by_time_of_day(path: Path, slots: np.ndarray, actual: np.ndarray, preds: dict) -> Path:
    """Occupancy RMSE by slot of day for every model (one slot ahead)."""
    plt = _pyplot()
    tod = np.asarray(slots) % SLOTS_PER_DAY
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, p in preds.items():
        err = ((p[..., 0] - actual[..., 0]) ** 2).mean(axis=1)  # (T,) mean squared error per slot
        mse = np.bincount(tod, weights=err, minlength=SLOTS_PER_DAY) / np.maximum(np.bincount(tod, minlength=SLOTS_PER_DAY), 1)
        ax.plot(np.arange(SLOTS_PER_DAY) / 2, np.sqrt(mse), label=name, lw=2.5 if name == "flow_lstm" else 1.2)
    _label(ax, "time of day (h)", "occupancy RMSE (users per cell)", "Test-period occupancy error by time of day, 30 min ahead")
    return _save(plt, fig, path, 90)


def calibration_plot(path: Path, bins: dict, slots: np.ndarray, totals: dict) -> Path:
    """Left: reliability of FlowLSTM's occupancy per horizon (mean actual against mean forecast per forecast
    bin, log-log; the diagonal is calibrated). Right: per test slot, the city's total occupancy, actual and forecast."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    lo = hi = None
    for h, rows in bins.items():
        f = np.array([r["mean_forecast"] for r in rows])
        a = np.array([r["mean_actual"] for r in rows])
        keep = (f > 0) & (a > 0)
        left.loglog(f[keep], a[keep], "o-", label=f"h={h} ({30 * int(h)} min)", ms=4)
        if keep.any():
            lo = min(lo or np.inf, f[keep].min(), a[keep].min())
            hi = max(hi or 0, f[keep].max(), a[keep].max())
    if lo is not None:
        left.loglog([lo, hi], [lo, hi], "k--", lw=1, label="calibrated")
    _label(left, "mean forecast per bin (people per cell)", "mean actual", "Reliability, FlowLSTM occupancy")
    hours = (np.asarray(slots) - slots[0]) / 2
    for name, series in totals.items():
        right.plot(hours, series, label=name, lw=2.0 if name == "actual" else 1.0)
    _label(right, "hours into the test period", "sum of occupancy over scored cells", "Calibration per slot: forecast totals vs actual")
    return _save(plt, fig, path, 80)
