"""User profiles from window embeddings: plain means, time-bucket means and the routine summary a probe reads.

Everything here is a pure function of (uid, end slot, embedding) rows, one per window: no cell, POI or
label of a user goes in (only the embeddings, when the windows end, and so how many there are), so the
random and untrained baselines are pooled by exactly the same code.
"""

from __future__ import annotations

import warnings

import numpy as np

from models.slots import SLOTS_PER_DAY, WINDOW_SLOTS, weekday
from models.windows import BUCKETS, Windows, tiled_windows, time_bucket

PARTS = BUCKETS // 2  # 4-hour parts of a day; bucket = part + PARTS on weekends
NIGHT_PARTS = (0, PARTS - 1)  # 20:00-04:00: where a home is
DAY_PARTS = (2, 3)  # 08:00-16:00 on weekdays: where a workplace (or school) is
AWAY = (2.0, 4.0)  # "away from home" thresholds, in units of the typical night spread (see `routine`)
DAY_AWAY = (2.0, 3.0, 4.0, 6.0)
ROUTINE = 4 * BUCKETS + 12 + 4 + 6 * BUCKETS + 5  # 141
GEOMETRY = 2 * BUCKETS + BUCKETS * (BUCKETS - 1) // 2 + BUCKETS  # 102
# Profiles read four tilings of a user's sequence, by the phase of their windows' end slot: windows ending
# at slots 8k + 7 (04:00, 08:00, ...), 8k + 5 (03:00, 07:00, ...), 8k + 3 and 8k + 1, i.e. a 4-hour window
# ending at every full hour. One tiling cuts days at fixed hours; the others cut them where routines change
# (06:00-10:00 holds the morning commute, 14:00-18:00 the end of a school or work day). Each phase is
# summarised on its own (measured on the demo city: one tiling 0.872, two 0.90, four 0.91, eight 0.91).
PHASES = tuple(range(WINDOW_SLOTS - 1, 0, -2))  # (7, 5, 3, 1)
SUMMARY = len(PHASES) * (GEOMETRY + ROUTINE)  # 972


def profile_windows(uid, slot, x, y) -> Windows:
    """The windows a profile pools: per phase in `PHASES`, back-to-back 8-slot windows ending at slots
    8k + phase that hold at least one observation (every observation lies in one window of each phase),
    sorted by (uid, end slot)."""
    return tiled_windows(uid, slot, x, y, phases=PHASES)


def mean_by_user(uid: np.ndarray, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean embedding per uid: (U,) sorted uids and (U, D) float32."""
    from scipy import sparse

    users, inv = np.unique(uid, return_inverse=True)
    n = np.bincount(inv, minlength=len(users))
    # A sparse (U, N) averaging matrix: one product instead of a scatter-add per row.
    avg = sparse.csr_matrix((1.0 / n[inv], (inv, np.arange(len(inv)))), shape=(len(users), len(inv)))
    return users, np.asarray(avg @ emb, dtype=np.float32)


def group_mean(key: np.ndarray, v: np.ndarray, k: int) -> np.ndarray:
    """Mean of the scalars `v` per key in 0..k-1 (0 for an empty key)."""
    return np.bincount(key, v, minlength=k) / np.maximum(np.bincount(key, minlength=k), 1)


def group_max(key: np.ndarray, v: np.ndarray, k: int, empty: float = 0.0) -> np.ndarray:
    out = np.full(k, -np.inf)
    np.maximum.at(out, key, v)
    return np.where(np.isfinite(out), out, empty)


def vector_mean(key: np.ndarray, emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(k, D) mean vectors per key in 0..k-1 (zeros where empty) and the (k,) counts."""
    got, means = mean_by_user(key, emb)
    out = np.zeros((k, emb.shape[1]), dtype=np.float32)
    out[got] = means
    return out, np.bincount(key, minlength=k)


def profiles(uid: np.ndarray, end_slot: np.ndarray, emb: np.ndarray, time_aware: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Window embeddings -> one vector per user: (U,) sorted uids and (U, F) float32.

    Plain: the mean embedding (F = D). `time_aware`: F = 12 * D + `SUMMARY`: the mean embedding of each
    time bucket (`models.windows.time_bucket`: 4-hour part of the day x weekday/weekend; zeros for an
    empty bucket), concatenated, then `summary` (the compact part a commuter probe reads).
    """
    if not time_aware:
        return mean_by_user(uid, emb)
    users, inv = np.unique(uid, return_inverse=True)
    m, _ = vector_mean(inv * BUCKETS + time_bucket(end_slot), emb, len(users) * BUCKETS)
    return users, np.concatenate([m.reshape(len(users), -1), summary(uid, end_slot, emb)[1]], axis=1)


def summary(uid: np.ndarray, end_slot: np.ndarray, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U,) sorted uids and (U, 972) float32: per phase of the windows' end slot (`PHASES`), `geometry`
    (102) then `routine` (141) of that phase's windows. A user with no window of a phase gets zeros there."""
    users = np.unique(uid)
    parts = []
    for phase in PHASES:
        sel = np.asarray(end_slot) % WINDOW_SLOTS == phase
        got = np.zeros((len(users), GEOMETRY + ROUTINE), dtype=np.float32)
        if sel.any():
            u, g = geometry(uid[sel], end_slot[sel], emb[sel])
            got[np.searchsorted(users, u)] = np.concatenate([g, routine(uid[sel], end_slot[sel], emb[sel])[1]], axis=1)
        parts.append(got)
    return users, np.concatenate(parts, axis=1)


def geometry(uid: np.ndarray, end_slot: np.ndarray, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U, 102) geometry of the time-bucket means: each bucket mean's distance to the user's overall mean
    (12), the spread of the bucket's windows around its mean (12), the 66 distances between bucket means,
    and log(1 + windows) per bucket (12). "Away from home on weekday daytimes, at one place or at many" is
    a distance between embeddings, which a linear probe cannot compute from the means alone."""
    users, inv = np.unique(uid, return_inverse=True)
    U = len(users)
    key = inv * BUCKETS + time_bucket(end_slot)
    m, n = vector_mean(key, emb, U * BUCKETS)
    sq = np.bincount(key, (emb.astype(np.float64) ** 2).sum(axis=1), minlength=U * BUCKETS) / np.maximum(n, 1)
    spread = np.sqrt(np.maximum(sq - (m.astype(np.float64) ** 2).sum(axis=1), 0)).reshape(U, BUCKETS)
    m = m.reshape(U, BUCKETS, -1)  # (U, 12, D)
    _, overall = mean_by_user(uid, emb)  # (U, D)
    away = np.linalg.norm(m - overall[:, None, :], axis=2) * (n.reshape(U, BUCKETS) > 0)  # (U, 12)
    iu = np.triu_indices(BUCKETS, 1)
    between = np.stack([np.linalg.norm(m[:, i] - m[:, j], axis=1) for i, j in zip(*iu)], axis=1)  # (U, 66)
    g = np.concatenate([away, spread, between, np.log1p(n).reshape(U, BUCKETS)], axis=1)
    return users, g.astype(np.float32)


def routine(uid: np.ndarray, end_slot: np.ndarray, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U, 141): when a user is away from home, how regularly, and whether always at the same place.

    Home is the user's mean night window (20:00-04:00; the overall mean without one), work the mean of
    their weekday 08:00-16:00 windows away from home (home without one). Distances are divided by one
    scale, the median distance of a night window to its user's home over all users pooled together, so
    the thresholds mean "further than the usual night-time wobble" for any embedding. Per user:
      - per time bucket: mean and max distance to home, share of windows further than 2 and 4 (48);
      - per weekday seen (its 08:00-16:00 windows): the day's furthest distance from home; the share of
        days further than 2, 3, 4, 6, their mean, std and median, and the mean per day of week Mon..Fri
        sorted (three fixed days away or five: part-timers) (12);
      - work: mean distance of a day's away windows' mean to work, mean distance of away windows to work
        (one place or many), log(1 + away windows), work-home distance (4);
      - per time bucket: mean distance to work, that divided by (1 + work-home distance), share of
        windows within 2 and 4 of work, share further than 2 and 4 from both home and work (72);
      - repetition: for each weekday daytime window, the distance to the nearest such window of another
        day (the same place again); its mean, quartiles, and mean / (1 + work-home distance) (5).
    """
    users, inv = np.unique(uid, return_inverse=True)
    U = len(users)
    b = time_bucket(end_slot)
    part, weekend = b % PARTS, b >= PARTS
    day = np.asarray(end_slot, dtype=np.int64) // SLOTS_PER_DAY
    night = np.isin(part, NIGHT_PARTS)
    _, overall = mean_by_user(inv, emb)
    home, has_night = vector_mean(inv[night], emb[night], U)
    home = np.where(has_night[:, None] > 0, home, overall)
    d = np.linalg.norm(emb - home[inv], axis=1)
    scale = float(np.median(d[night])) if night.any() else 0.0
    if not scale > 0:  # too few windows to measure a night-time wobble: any positive unit will do
        scale = float(d.mean()) if d.mean() > 0 else 1.0
    d = d / scale
    key, K = inv * BUCKETS + b, U * BUCKETS
    per_bucket = [group_mean(key, d, K), group_max(key, d, K)] + [group_mean(key, (d > t).astype(float), K) for t in AWAY]

    # Workdays: the furthest the user got from home in each weekday's daytime.
    dayt = ~weekend & np.isin(part, DAY_PARTS)
    days = int(day.max()) + 1
    kud = inv[dayt] * days + day[dayt]
    seen = (np.bincount(kud, minlength=U * days) > 0).reshape(U, days)
    far = np.where(seen, group_max(kud, d[dayt], U * days).reshape(U, days), np.nan)  # (U, days)
    with warnings.catch_warnings():  # a user without a weekday seen: NaN (then 0), not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        shares = [np.nanmean(np.where(seen, far > t, np.nan), axis=1) for t in DAY_AWAY]
        dows = np.stack([np.nanmean(far[:, weekday(np.arange(days)) == k], axis=1) for k in range(5)], axis=1)  # (U, 5)
        days_f = np.stack(shares + [np.nanmean(far, 1), np.nanstd(far, 1), np.nanmedian(far, 1)], axis=1)
    days_f = np.concatenate([days_f, -np.sort(-np.nan_to_num(dows), axis=1)], axis=1)  # (U, 12)

    aw = dayt & (d > AWAY[0])
    work, n_away = vector_mean(inv[aw], emb[aw], U)
    work = np.where(n_away[:, None] > 0, work, home)
    hw = np.linalg.norm(work - home, axis=1) / scale
    dw = np.linalg.norm(emb - work[inv], axis=1) / scale
    day_means, n_day = vector_mean(inv[aw] * days + day[aw], emb[aw], U * days)
    day_to_work = np.linalg.norm(day_means - np.repeat(work, days, axis=0), axis=1) / scale
    has = n_day > 0
    work_f = np.stack([group_mean(np.repeat(np.arange(U), days)[has], day_to_work[has], U),
                       group_mean(inv[aw], dw[aw], U), np.log1p(n_away), hw], axis=1)
    per_bucket += [group_mean(key, dw, K), group_mean(key, dw, K) / (1 + np.repeat(hw, BUCKETS))]
    per_bucket += [group_mean(key, (dw < t).astype(float), K) for t in AWAY]
    per_bucket += [group_mean(key, ((dw > t) & (d > t)).astype(float), K) for t in AWAY]
    rep = repetition(inv[dayt], day[dayt], emb[dayt], U) / scale  # (U, 4)
    rep = np.concatenate([rep, rep[:, :1] / (1 + hw[:, None])], axis=1)
    out = np.concatenate([np.stack(per_bucket[:4], 1).reshape(U, -1), days_f, work_f,
                          np.stack(per_bucket[4:], 1).reshape(U, -1), rep], axis=1)
    return users, np.nan_to_num(out, nan=0.0).astype(np.float32)


def repetition(inv: np.ndarray, day: np.ndarray, emb: np.ndarray, U: int) -> np.ndarray:
    """(U, 4): for each window, the distance to the nearest window of the same user on another day; per
    user its mean and quartiles (0 where a user has fewer than two days)."""
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(U + 1))
    out = np.zeros((U, 4))
    for u in range(U):
        s = order[bounds[u] : bounds[u + 1]]
        if len(s) < 2:
            continue
        x = emb[s].astype(np.float64)
        sq = (x**2).sum(1)
        dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0))  # (n, n)
        dist[day[s][:, None] == day[s][None, :]] = np.inf
        near = dist.min(axis=1)
        near = near[np.isfinite(near)]
        if len(near):
            out[u] = [near.mean(), *np.quantile(near, [0.25, 0.5, 0.75])]
    return out
