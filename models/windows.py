"""The per-user 8-slot window: each user's cell in each of their last 8 slots, with a mask for unseen slots.

Pure numpy, used offline (training datasets, evaluation) and online (the stream worker) alike, so
both sides see the same windows. Rules (docs/encoder.md, the design notes "Time and windows"):
- observations are (uid, slot, x, y) rows; a masked (999, 999) row is not an observation;
- a user's cell in a slot is the cell of their latest ping in that slot: the last row of that
  (uid, slot) in the given order (pass `ts` to order by event time instead);
- the window ending at `end_slot` covers slots end_slot-7 .. end_slot, oldest first; a slot in
  which the user was not seen has mask False and cell (0, 0) (0 is no cell: cells are 1-based).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.grid import in_grid, is_masked
from models.slots import SLOTS_PER_DAY, WINDOW_SLOTS, weekday

PAD = 0  # the cell value of an unseen slot; never a real cell (cells are 1..200)
BUCKETS = 2 * SLOTS_PER_DAY // WINDOW_SLOTS  # time buckets of user profiles: 4-hour part of the day x (weekday, weekend)


@dataclass(frozen=True)
class Windows:
    """N windows: `uid` (N,), `end_slot` (N,), `x`, `y` (N, 8) int64, `mask` (N, 8) bool (True = observed)."""

    uid: np.ndarray
    end_slot: np.ndarray
    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return len(self.uid)

    def take(self, idx: np.ndarray) -> "Windows":
        return Windows(self.uid[idx], self.end_slot[idx], self.x[idx], self.y[idx], self.mask[idx])


def latest_per_slot(uid, slot, x, y, ts=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One row per (uid, slot): the latest ping's cell, masked and out-of-grid rows dropped.

    Rows come back sorted by (uid, slot). Without `ts` the input order decides which ping of a slot is
    the latest (the last one wins); with `ts` the greatest event time wins (ties: the later row).
    """
    uid, slot, x, y = (np.asarray(a, dtype=np.int64) for a in (uid, slot, x, y))
    keep = ~is_masked(x, y) & in_grid(x, y)
    order_key = np.arange(len(uid)) if ts is None else np.asarray(ts, dtype=np.float64)
    uid, slot, x, y, order_key = uid[keep], slot[keep], x[keep], y[keep], order_key[keep]
    # lexsort's last key is the primary one; a stable sort keeps row order among equal event times.
    order = np.lexsort((np.arange(len(uid)), order_key, slot, uid))
    uid, slot, x, y = uid[order], slot[order], x[order], y[order]
    last = np.ones(len(uid), dtype=bool)
    last[:-1] = (uid[1:] != uid[:-1]) | (slot[1:] != slot[:-1])
    return uid[last], slot[last], x[last], y[last]


def windows_for(uid, slot, x, y, q_uid, q_end, size: int = WINDOW_SLOTS, ts=None) -> Windows:
    """The window of user q_uid[i] ending at slot q_end[i], for every query i, from observations (uid, slot, x, y).

    Vectorised: after `latest_per_slot` the rows are sorted by (uid, slot), one per slot, so the rows of
    a window are the (at most `size`) consecutive rows between two binary-search bounds.
    """
    u, s, cx, cy = latest_per_slot(uid, slot, x, y, ts)
    q_uid = np.asarray(q_uid, dtype=np.int64)
    q_end = np.asarray(q_end, dtype=np.int64)
    order = np.lexsort((s, u))  # already sorted; keeps the search keys honest
    span = np.int64(1) << 32  # slots fit in 32 bits; uid * span + slot orders like (uid, slot)
    key = u[order] * span + s[order]
    lo = np.searchsorted(key, q_uid * span + q_end - size + 1, side="left")
    hi = np.searchsorted(key, q_uid * span + q_end, side="right")
    n = len(q_uid)
    wx = np.full((n, size), PAD, dtype=np.int64)
    wy = np.full((n, size), PAD, dtype=np.int64)
    mask = np.zeros((n, size), dtype=bool)
    for k in range(size):
        rows = np.flatnonzero(lo + k < hi)
        src = order[lo[rows] + k]
        col = s[src] - (q_end[rows] - size + 1)
        wx[rows, col], wy[rows, col], mask[rows, col] = cx[src], cy[src], True
    return Windows(q_uid, q_end, wx, wy, mask)


def windows_at(uid, slot, x, y, end_slot: int, ts=None, size: int = WINDOW_SLOTS) -> Windows:
    """The window ending at `end_slot` of every user seen in it (the online case; unseen users left out)."""
    uid, slot = np.asarray(uid, dtype=np.int64), np.asarray(slot, dtype=np.int64)
    x, y = np.asarray(x), np.asarray(y)
    seen = (slot > end_slot - size) & (slot <= end_slot) & ~is_masked(x, y) & in_grid(x, y)
    users = np.unique(uid[seen])
    return windows_for(uid, slot, x, y, users, np.full(len(users), end_slot, dtype=np.int64), size, ts)


def windows_at_observations(uid, slot, x, y, size: int = WINDOW_SLOTS) -> Windows:
    """For every observed (uid, slot), the user's window ending at that slot (the offline dataset's windows)."""
    u, s, _, _ = latest_per_slot(uid, slot, x, y)
    return windows_for(uid, slot, x, y, u, s, size)


def tiled_windows(uid, slot, x, y, size: int = WINDOW_SLOTS, phases=None) -> Windows:
    """Back-to-back windows tiling each user's sequence, keeping those with at least one observation,
    sorted by (uid, end slot). Per phase p in `phases` (default: size-1 alone) the windows end at slots
    size*k + p, so every observation lands in exactly one window of each phase."""
    u, s, _, _ = latest_per_slot(uid, slot, x, y)
    q_uid, q_end = [], []
    for phase in (size - 1,) if phases is None else phases:
        keys = np.unique(np.stack([u, np.floor_divide(s + size - 1 - phase, size)], axis=1), axis=0)
        q_uid.append(keys[:, 0])
        q_end.append(keys[:, 1] * size + phase)
    q_uid, q_end = np.concatenate(q_uid), np.concatenate(q_end)
    order = np.lexsort((q_end, q_uid))
    return windows_for(uid, slot, x, y, q_uid[order], q_end[order], size)


def sample_per_user(uid: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most k random rows per uid (rows of a uid need not be contiguous), sorted."""
    key = rng.random(len(uid))
    order = np.lexsort((key, uid))
    u = uid[order]
    start = np.r_[0, np.flatnonzero(u[1:] != u[:-1]) + 1]
    rank = np.arange(len(u)) - np.repeat(start, np.diff(np.r_[start, len(u)]))
    return np.sort(order[rank < k])


def time_features(end_slot, size: int = WINDOW_SLOTS) -> tuple[np.ndarray, np.ndarray]:
    """Slot of day (0..47) and day of week (0..6, 0 = Monday) of each slot of windows ending at `end_slot`.

    Both (N, size). Slots before slot 0 (a window at the very start of a dataset) wrap like real time.
    """
    end = np.asarray(end_slot, dtype=np.int64).reshape(-1, 1)
    slots = end + np.arange(-size + 1, 1)  # (N, size)
    return np.mod(slots, SLOTS_PER_DAY), np.mod(np.floor_divide(slots, SLOTS_PER_DAY), 7)


def model_input(x, y, mask, end_slot) -> np.ndarray:
    """The encoder's input (N, size, 5) int64: cell x, cell y, slot of day, day of week, observed.

    `end_slot` is one slot for all windows or one per window. Unobserved slots get cell (0, 0).
    """
    mask = np.asarray(mask, dtype=bool)
    n, size = mask.shape
    end = np.broadcast_to(np.asarray(end_slot, dtype=np.int64), (n,))
    tod, dow = time_features(end, size)
    x = np.where(mask, np.asarray(x, dtype=np.int64), PAD)
    y = np.where(mask, np.asarray(y, dtype=np.int64), PAD)
    return np.stack([x, y, tod, dow, mask.astype(np.int64)], axis=-1)


def time_bucket(end_slot: np.ndarray) -> np.ndarray:
    """Bucket of a slot, or of the window ending at it (tiles never straddle one): its 4-hour part of the day (0..5), + 6 on weekends."""
    end = np.asarray(end_slot, dtype=np.int64)
    return (end % SLOTS_PER_DAY) // WINDOW_SLOTS + (BUCKETS // 2) * (weekday(end // SLOTS_PER_DAY) >= 5)
