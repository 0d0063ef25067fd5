"""Forecast scores shared by `evaluate flow` and the live error: RMSE, MAE, Poisson deviance and total-count bias."""

from __future__ import annotations

import numpy as np

# A forecast of 0 where people came has infinite Poisson deviance; forecasts are floored at this many people
# for the deviance only (persistence and seasonal naive forecast 0 on most cells).
DEVIANCE_FLOOR = 0.01


def poisson_deviance(pred: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Unit Poisson deviance 2 * (y log(y / mu) - (y - mu)) per element, mu = max(pred, DEVIANCE_FLOOR)."""
    y = np.asarray(actual, dtype=np.float64)
    mu = np.maximum(np.asarray(pred, dtype=np.float64), DEVIANCE_FLOOR)
    with np.errstate(divide="ignore", invalid="ignore"):
        ylog = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
    return 2.0 * (ylog - (y - mu))


def scores(pred: np.ndarray, actual: np.ndarray) -> dict | None:
    """One row of the tables: rmse, mae, poisson_deviance (means over every element) and bias_pct
    (100 * (sum of forecasts - sum of actuals) / sum of actuals; None when nothing happened). None when empty."""
    pred = np.asarray(pred, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if not pred.size:
        return None
    err = pred - actual
    total = float(actual.sum())
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "poisson_deviance": float(np.mean(poisson_deviance(pred, actual))),
        "bias_pct": 100.0 * float(err.sum()) / total if total > 0 else None,
    }
