"""Hand-crafted mobility features per user (the profiling baseline): gyration, distinct cells, home-work distance."""

from __future__ import annotations

import numpy as np

from models.grid import cell_distance_km, cell_id, cell_xy
from models.slots import SLOTS_PER_DAY, weekday
from models.windows import BUCKETS, time_bucket

NIGHT = (44, 12)  # t >= 44 or t < 12: 22:00-06:00, where a home is
WORK_HOURS = (18, 36)  # 09:00-18:00 on weekdays, where a workplace is


def modal_cell(uid: np.ndarray, cell: np.ndarray, uids: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Most frequent cell per uid in `uids` (ties: the smallest cell); `fallback` where a user has no row."""
    import pandas as pd

    counts = pd.DataFrame({"uid": uid, "cell": cell}).value_counts().reset_index(name="n")
    top = counts.sort_values(["uid", "n", "cell"], ascending=[True, False, True]).drop_duplicates("uid").set_index("uid")["cell"]
    got = top.reindex(uids).to_numpy()
    return np.where(np.isnan(got.astype(float)), fallback, got).astype(np.int64)


def mobility_features(obs, uids: np.ndarray) -> np.ndarray:
    """(U, 19): radius of gyration (km), distinct cells, observations, home-work distance (km) with home the
    modal night cell and work the modal weekday-daytime cell, share of weekday-daytime records away from
    home (> 1 km), log distinct cells per observation, the share of weekday-daytime records in the work cell
    (a fixed workplace vs a mobile one), and the share of records away from home in each of the 12 time buckets
    of the encoder's time-aware profile (4-hour part of the day x weekday/weekend; 0 where a bucket is empty):
    the same "when is this user where" the encoder's profile gets."""
    row = np.searchsorted(uids, obs.uid)
    n = np.bincount(row, minlength=len(uids)).astype(float)
    mx = np.bincount(row, obs.x, len(uids)) / np.maximum(n, 1)
    my = np.bincount(row, obs.y, len(uids)) / np.maximum(n, 1)
    gyr = np.sqrt(np.bincount(row, (obs.x - mx[row]) ** 2 + (obs.y - my[row]) ** 2, len(uids)) / np.maximum(n, 1)) * 0.5
    cells = cell_id(obs.x, obs.y)
    distinct = np.bincount(np.unique(np.stack([row, cells], 1), axis=0)[:, 0], minlength=len(uids)).astype(float)
    t, d = obs.slot % SLOTS_PER_DAY, obs.slot // SLOTS_PER_DAY
    night = (t >= NIGHT[0]) | (t < NIGHT[1])
    day = (t >= WORK_HOURS[0]) & (t < WORK_HOURS[1]) & (weekday(d) < 5)
    overall = modal_cell(obs.uid, cells, uids, np.zeros(len(uids), np.int64))
    home = modal_cell(obs.uid[night], cells[night], uids, overall)
    work = modal_cell(obs.uid[day], cells[day], uids, home)
    hx, hy = cell_xy(home)
    wx, wy = cell_xy(work)
    away = day & (cell_distance_km(obs.x, obs.y, hx[row], hy[row]) > 1.0)
    away_share = np.bincount(row[away], minlength=len(uids)) / np.maximum(np.bincount(row[day], minlength=len(uids)), 1)
    at_work = np.bincount(row[day & (cells == work[row])], minlength=len(uids)) / np.maximum(np.bincount(row[day], minlength=len(uids)), 1)
    away_any = cell_distance_km(obs.x, obs.y, hx[row], hy[row]) > 1.0
    key = row * BUCKETS + time_bucket(obs.slot)
    per_bucket = np.bincount(key[away_any], minlength=len(uids) * BUCKETS) / np.maximum(np.bincount(key, minlength=len(uids) * BUCKETS), 1)
    base = [gyr, distinct, n, cell_distance_km(hx, hy, wx, wy), away_share, np.log1p(distinct) - np.log1p(n), at_work]
    return np.concatenate([np.stack(base, axis=1), per_bucket.reshape(len(uids), BUCKETS)], axis=1)
