"""Trajectory and next-location metrics: HuMob's GEO-BLEU and DTW, accuracy@k, distance error in km.

GEO-BLEU and DTW follow the HuMob challenge's reference package (yahoojapan/geobleu), re-implemented
here: points are (x, y) cells; GEO-BLEU uses n-grams n = 1..3 with equal weights, point proximity
exp(-beta * d) with d in cells and beta = 0.5 (so 1 km = 2 cells gives e^-1), greedy one-to-one
n-gram matching, and BLEU's brevity penalty; DTW sums Euclidean cell distances divided by 2 (km).
Both are computed per user per day, averaged over the user's days, then over users.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from models.grid import CELL_METERS, cell_distance_km, cell_xy

GEOBLEU_MAX_N = 3
GEOBLEU_BETA = 0.5
# DTW's unit is 1 km: cell distances are divided by this (2 cells of 500 m per km).
DTW_CELLS_PER_KM = 1000.0 / CELL_METERS


def _points(seq) -> np.ndarray:
    return np.asarray(seq, dtype=np.float64).reshape(-1, 2)  # (L, 2) = (x, y)


def _pairwise_cells(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance in cells between every point of a (n, 2) and of b (m, 2): (n, m)."""
    return np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])


def _greedy_match_sum(prox: np.ndarray) -> float:
    """Sum of the greedy one-to-one matching: take the closest remaining pair, drop its row and column.

    Ties go to the smallest (sys, ans) index pair, as a stable descending sort of the edges does.
    """
    prox = prox.copy()
    total = 0.0
    for _ in range(min(prox.shape)):
        i, j = np.unravel_index(np.argmax(prox), prox.shape)
        total += prox[i, j]
        prox[i, :] = -np.inf
        prox[:, j] = -np.inf
    return float(total)


def geobleu(sys_seq, ans_seq, max_n: int = GEOBLEU_MAX_N, beta: float = GEOBLEU_BETA) -> float:
    """GEO-BLEU of a generated (x, y) trajectory against the reference, both of one day, in time order."""
    sys_pts, ans_pts = _points(sys_seq), _points(ans_seq)
    n_sys, n_ans = len(sys_pts), len(ans_pts)
    if n_sys == 0 or n_ans == 0:
        raise ValueError(f"GEO-BLEU needs non-empty trajectories (generated {n_sys}, reference {n_ans} points)")
    point_prox = np.exp(-beta * _pairwise_cells(sys_pts, ans_pts))  # (n_sys, n_ans)
    precisions = []
    ngram_prox = np.ones((n_sys + 1, n_ans + 1))
    for n in range(1, min(max_n, n_sys, n_ans) + 1):
        # proximity of the n-grams starting at (i, j) = product of their n point proximities
        ngram_prox = ngram_prox[: n_sys - n + 1, : n_ans - n + 1] * point_prox[n - 1 :, n - 1 :]
        precisions.append(_greedy_match_sum(ngram_prox) / (n_sys - n + 1))
    precisions = np.asarray(precisions)
    if np.any(precisions <= 0.0):
        return 0.0
    brevity = 1.0 if n_sys > n_ans else float(np.exp(1.0 - n_ans / n_sys))
    return brevity * float(np.exp(np.mean(np.log(precisions))))


def dtw_km(sys_seq, ans_seq, cells_per_km: float = DTW_CELLS_PER_KM) -> float:
    """Dynamic time warping distance in km between two (x, y) trajectories of one day."""
    cost = _pairwise_cells(_points(sys_seq), _points(ans_seq)) / cells_per_km  # (n, m)
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return float(acc[n, m])


def per_user_day(
    metric: Callable[[np.ndarray, np.ndarray], float],
    uid: np.ndarray,
    d: np.ndarray,
    t: np.ndarray,
    pred_xy: np.ndarray,
    true_xy: np.ndarray,
) -> float:
    """The challenge's aggregation: metric per user per day (points in slot order), mean over a
    user's days, then mean over users. Rows are reference observations with the prediction beside."""
    uid, d, t = np.asarray(uid), np.asarray(d), np.asarray(t)
    pred_xy, true_xy = np.asarray(pred_xy).reshape(-1, 2), np.asarray(true_xy).reshape(-1, 2)
    if len(uid) == 0:
        return float("nan")
    order = np.lexsort((t, d, uid))
    uid, d, pred_xy, true_xy = uid[order], d[order], pred_xy[order], true_xy[order]
    starts = np.flatnonzero(np.r_[True, (uid[1:] != uid[:-1]) | (d[1:] != d[:-1])])
    ends = np.r_[starts[1:], len(uid)]
    day_scores = np.array([metric(pred_xy[a:b], true_xy[a:b]) for a, b in zip(starts, ends)])
    day_uid = uid[starts]
    users, inverse = np.unique(day_uid, return_inverse=True)
    user_means = np.bincount(inverse, weights=day_scores) / np.bincount(inverse)
    return float(user_means.mean())


def accuracy_at_k(topk_cells: np.ndarray, true_cells: np.ndarray, k: int) -> float:
    """Share of queries whose true cell is among the first k ranked cells. topk_cells: (N, K >= k)."""
    topk_cells = np.asarray(topk_cells).reshape(len(true_cells), -1)
    if topk_cells.shape[1] < k:
        raise ValueError(f"accuracy@{k} needs at least {k} ranked cells per query, got {topk_cells.shape[1]}")
    return float((topk_cells[:, :k] == np.asarray(true_cells)[:, None]).any(axis=1).mean())


def distance_km(pred_cells: np.ndarray, true_cells: np.ndarray, cell_m: float = CELL_METERS) -> np.ndarray:
    """Euclidean distance between cell centres in km, for dense cell ids."""
    px, py = cell_xy(np.asarray(pred_cells))
    tx, ty = cell_xy(np.asarray(true_cells))
    return cell_distance_km(px, py, tx, ty, cell_m)
