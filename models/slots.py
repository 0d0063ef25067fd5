"""The time model: 30-minute slots counted from an origin, days of 48 slots, 8-slot windows.

Pure functions only; the clock is always a parameter. Offline code (dataset `d`,`t`) and online
code (ping `ts`) meet here: slot = floor((ts - origin) / 1800), d = slot // 48, t = slot % 48.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

SLOT_SECONDS = 1800
SLOTS_PER_DAY = 48
DAY_SECONDS = SLOT_SECONDS * SLOTS_PER_DAY
WINDOW_SLOTS = 8
# Day 0 of every dataset is taken to be this Monday (UTC), so weekday = d % 7 (0 = Monday).
DEFAULT_ORIGIN = int(dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc).timestamp())


def slot_of(ts: float, origin: int = DEFAULT_ORIGIN) -> int:
    """Slot index of an event time in epoch seconds."""
    return math.floor((ts - origin) / SLOT_SECONDS)


def slots_of(ts: np.ndarray, origin: int = DEFAULT_ORIGIN) -> np.ndarray:
    """Vectorised `slot_of` (int64)."""
    return np.floor((np.asarray(ts, dtype=np.float64) - origin) / SLOT_SECONDS).astype(np.int64)


def slot_from_dt(d: np.ndarray | int, t: np.ndarray | int) -> np.ndarray | int:
    """Slot index of dataset day `d` and slot-of-day `t`."""
    return d * SLOTS_PER_DAY + t


def dt_from_slot(slot: np.ndarray | int) -> tuple:
    """(d, t) of a slot index."""
    return slot // SLOTS_PER_DAY, slot % SLOTS_PER_DAY


def slot_start(slot: int, origin: int = DEFAULT_ORIGIN) -> int:
    """Epoch seconds at which a slot opens."""
    return origin + slot * SLOT_SECONDS


def weekday(d: np.ndarray | int) -> np.ndarray | int:
    """Day of week of dataset day `d` (0 = Monday) under the origin convention above."""
    return d % 7


def is_weekend(d: np.ndarray | int) -> np.ndarray | bool:
    return weekday(d) >= 5


def window_slots(end_slot: int, size: int = WINDOW_SLOTS) -> range:
    """The slots of the window that ends with (and includes) `end_slot`, oldest first."""
    return range(end_slot - size + 1, end_slot + 1)


def replay_ts(d: np.ndarray, t: np.ndarray, uid: np.ndarray, origin: int = DEFAULT_ORIGIN) -> np.ndarray:
    """Event times for replaying dataset rows: slot start plus a deterministic jitter inside the slot.

    The jitter is a hash of (uid, d, t), so a replay is reproducible and never leaves its slot.
    """
    d = np.asarray(d, dtype=np.int64)
    t = np.asarray(t, dtype=np.int64)
    u = np.asarray(uid, dtype=np.int64)
    h = (u * 2654435761 + d * 40503 + t * 9973) % (SLOT_SECONDS - 1)
    return origin + d * DAY_SECONDS + t * SLOT_SECONDS + h
