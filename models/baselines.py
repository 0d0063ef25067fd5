"""Naive flow forecasts every model must beat: persistence, seasonal naive, historical average.

All work on a dense counts array (S, N, 3) indexed by slot offset (slot - slot0) and predict the
slots `targets` (offsets); pure numpy, so the evaluator and the live error metric share them.
"""

from __future__ import annotations

import numpy as np

from models.slots import SLOTS_PER_DAY

WEEK_SLOTS = 7 * SLOTS_PER_DAY


def seasonal_naive(counts: np.ndarray, targets: np.ndarray, lag: int) -> np.ndarray:
    """The same cell `lag` slots earlier: lag 1 = persistence, 48 = a day, 336 = a week. (T, N, 3)."""
    targets = np.asarray(targets, dtype=np.int64)
    if len(targets) and targets.min() - lag < 0:
        raise ValueError(f"seasonal naive with lag {lag} needs slot offsets >= {lag}; got {targets.min()}")
    return counts[targets - lag].astype(np.float32)


def persistence(counts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return seasonal_naive(counts, targets, 1)


def slot_of_week(slot) -> np.ndarray:
    return np.asarray(slot, dtype=np.int64) % WEEK_SLOTS


class HistoricalAverage:
    """Mean count per (cell, slot of week) over a fitting period; cells' overall mean where a slot of week is unseen."""

    def __init__(self, table: np.ndarray):
        self.table = table  # (336, N, 3) float32

    @classmethod
    def fit(cls, counts: np.ndarray, slot0: int) -> "HistoricalAverage":
        sow = slot_of_week(slot0 + np.arange(len(counts)))
        sums = np.zeros((WEEK_SLOTS,) + counts.shape[1:], dtype=np.float64)
        for k in np.unique(sow):  # 336 slices; np.add.at over (S, N, 3) is far slower
            sums[k] = counts[sow == k].sum(axis=0, dtype=np.float64)
        seen = np.bincount(sow, minlength=WEEK_SLOTS).astype(np.float64)[:, None, None]
        overall = counts.mean(axis=0, dtype=np.float64)[None]
        table = np.where(seen > 0, sums / np.maximum(seen, 1), overall)
        return cls(table.astype(np.float32))

    def predict(self, targets: np.ndarray, slot0: int) -> np.ndarray:
        return self.table[slot_of_week(slot0 + np.asarray(targets, dtype=np.int64))]
