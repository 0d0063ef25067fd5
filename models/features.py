"""Model features shared offline and online: time encodings, POI normalisation, and `model_input`.

`model_input` is THE function that turns cells' 8-slot channel windows into the model input; the
trainer, the evaluator and the online `FlowForecaster` all call it, so the features cannot drift.
Layout: `seq` (N, 8, 7) per slot [log1p channels standardised (3), time of day sin/cos, day of
week sin/cos] and `static` (N, S) the cell's static features, log1p and z-scored over the grid: its
85 POI counts, and for models trained with cell levels its 3 mean counts over the training period.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from models.exceptions import ModelsError
from models.grid import GRID_SIZE, cell_id, in_grid
from models.slots import SLOTS_PER_DAY, WINDOW_SLOTS

N_CHANNELS = 3
N_TIME = 4
N_DYNAMIC = N_CHANNELS + N_TIME
N_POI = 85
N_LEVELS = N_CHANNELS  # a cell's mean count per channel over the training period, after the POI columns
_WEEK = 7 * SLOTS_PER_DAY


class FeatureError(ModelsError):
    """Feature inputs have the wrong shape or values (names the array at fault)."""


@dataclass(frozen=True)
class FeatureStats:
    """Normalisation statistics fitted on the training period; stored in every flow checkpoint."""

    chan_mean: tuple[float, ...]  # mean of log1p(count) per channel
    chan_std: tuple[float, ...]
    target_scale: tuple[float, ...]  # models predict count / target_scale
    poi_mean: tuple[float, ...]  # per POI category, of log1p(count) over all grid cells
    poi_std: tuple[float, ...]

    def to_dict(self) -> dict:
        return {k: [float(x) for x in v] for k, v in asdict(self).items()}  # plain floats: weights_only loads

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureStats":
        try:
            return cls(**{k: tuple(float(x) for x in d[k]) for k in cls.__dataclass_fields__})
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureError(f"feature statistics are incomplete or malformed: {exc}") from exc


def time_encoding(slot) -> np.ndarray:
    """(..., 4) float32: sin/cos of time of day and of (continuous) day of week; weekday = day % 7."""
    slot = np.asarray(slot, dtype=np.int64)
    tod = 2 * np.pi * (slot % SLOTS_PER_DAY) / SLOTS_PER_DAY
    dow = 2 * np.pi * (slot % _WEEK) / _WEEK
    return np.stack([np.sin(tod), np.cos(tod), np.sin(dow), np.cos(dow)], axis=-1).astype(np.float32)


def poi_table(x, y, category, count, size: int = GRID_SIZE) -> np.ndarray:
    """POI rows (x, y, category 1..85, count) -> (size*size, 85) float32 counts per cell and category."""
    x, y, category = (np.asarray(a, dtype=np.int64) for a in (x, y, category))
    count = np.asarray(count, dtype=np.float64)
    if len(category) and category.min() == 0:  # some files number categories 0..84
        category = category + 1
    bad = ~in_grid(x, y, size) | (category < 1) | (category > N_POI) | ~np.isfinite(count) | (count < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise FeatureError(f"POI row {i}: x={x[i]} y={y[i]} category={category[i]} count={count[i]} is out of range")
    table = np.zeros((size * size, N_POI), dtype=np.float64)
    np.add.at(table, (cell_id(x, y, size), category - 1), count)
    return table.astype(np.float32)


def fit_poi_stats(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-category mean and std of log1p(count) over all grid cells (std floored so empty columns stay 0)."""
    f = np.log1p(np.asarray(table, dtype=np.float64))
    return f.mean(axis=0), np.maximum(f.std(axis=0), 1e-6)


def poi_features(table_rows: np.ndarray, stats: FeatureStats) -> np.ndarray:
    """(N, S) static table rows (POI counts, then any cell levels) -> normalised features."""
    f = np.log1p(np.asarray(table_rows, dtype=np.float32))
    return ((f - np.float32(stats.poi_mean)) / np.float32(stats.poi_std)).astype(np.float32)


def fit_channel_stats(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From training counts (..., 3): log1p mean, log1p std, and the target scale (count std, >= 1)."""
    c = np.asarray(counts, dtype=np.float64).reshape(-1, N_CHANNELS)
    f = np.log1p(c)
    return f.mean(axis=0), np.maximum(f.std(axis=0), 1e-6), np.maximum(c.std(axis=0), 1.0)


TARGETS = ("level", "change")


def target_offset(last: np.ndarray, target: str) -> np.ndarray:
    """(N, 3) counts of the window's last slot -> what a model's output (times target_scale) is added to.

    `level`: 0, the model predicts the counts; `change`: the last slot, the model predicts the change,
    so "same as now" (persistence) is its zero output.
    """
    if target not in TARGETS:
        raise FeatureError(f"target {target!r} must be one of {', '.join(TARGETS)}")
    last = np.asarray(last, dtype=np.float32)
    return last if target == "change" else np.zeros_like(last)


def window_features(channels: np.ndarray, end_slot, stats: FeatureStats) -> np.ndarray:
    """Windows of counts (N, 8, 3), oldest slot first, ending at end_slot (int or (N,)) -> seq (N, 8, 7) float32."""
    channels = np.asarray(channels, dtype=np.float32)
    if channels.ndim != 3 or channels.shape[1:] != (WINDOW_SLOTS, N_CHANNELS):
        raise FeatureError(f"channels has shape {channels.shape}, expected (N, {WINDOW_SLOTS}, {N_CHANNELS})")
    n = channels.shape[0]
    end = np.broadcast_to(np.asarray(end_slot, dtype=np.int64), (n,))
    slots = end[:, None] + np.arange(-WINDOW_SLOTS + 1, 1)  # (N, 8) oldest first
    seq = np.empty((n, WINDOW_SLOTS, N_DYNAMIC), dtype=np.float32)
    seq[:, :, :N_CHANNELS] = (np.log1p(channels) - np.float32(stats.chan_mean)) / np.float32(stats.chan_std)
    if np.ndim(end_slot) == 0:  # one window end for all rows (the online case): encode 8 slots once
        seq[:, :, N_CHANNELS:] = time_encoding(slots[0])
    else:
        seq[:, :, N_CHANNELS:] = time_encoding(slots)
    return seq


def model_input(channels: np.ndarray, end_slot, poi_feats: np.ndarray, stats: FeatureStats) -> tuple[np.ndarray, np.ndarray]:
    """Windows of counts -> (seq (N, 8, 7), static (N, S)) float32.

    channels: (N, 8, 3) counts, oldest slot first; end_slot: the window's last slot (int or (N,));
    poi_feats: (N, S) from `poi_features` (S = 85 POI columns, + N_LEVELS with cell levels).
    """
    seq = window_features(channels, end_slot, stats)
    if poi_feats.shape not in ((len(seq), N_POI), (len(seq), N_POI + N_LEVELS)):
        raise FeatureError(f"poi_feats has shape {poi_feats.shape}, expected ({len(seq)}, {N_POI}) or ({len(seq)}, {N_POI + N_LEVELS})")
    return seq, np.ascontiguousarray(poi_feats, dtype=np.float32)
