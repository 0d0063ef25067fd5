"""Destination choice with distance decay: gravity-model anchors and local trips, both vectorised.

Exact gravity sampling, P(j | i) ~ A_j / d_ij^beta, needs a row of 40,000 weights per person; both
functions below draw a few candidate cells and pick one of them by weight (sampling-importance-
resampling with the Gumbel-max trick), which tends to the exact model as candidates grow.
"""

from __future__ import annotations

import numpy as np

from models.grid import GRID_SIZE, cell_xy
from training.synth.city import sample_cells

CELL_KM = 0.5


def distance_km(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay = cell_xy(a)
    bx, by = cell_xy(b)
    return np.hypot(ax - bx, ay - by) * CELL_KM


def _gumbel_argmax(logw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise draw of a column with probability proportional to exp(logw); -inf never wins."""
    u = rng.random(logw.shape, dtype=np.float32)
    return np.argmax(logw - np.log(-np.log(u + np.float32(1e-12))), axis=1)


def gravity_pick(origin: np.ndarray, cdf: np.ndarray, beta: float, rng: np.random.Generator,
                 candidates: int = 32, min_km: float = 0.5) -> np.ndarray:
    """Anchor cells by a gravity model: candidates drawn by attractiveness, kept with weight d^-beta."""
    cand = sample_cells(cdf, rng, (len(origin), candidates))  # (n, m)
    d = np.maximum(distance_km(origin[:, None], cand), min_km)
    k = _gumbel_argmax(-beta * np.log(d), rng)
    return cand[np.arange(len(origin)), k]


def local_pick(origin: np.ndarray, attract: np.ndarray, median_cells: np.ndarray | float,
               rng: np.random.Generator, candidates: int = 6, sigma: float = 0.9) -> np.ndarray:
    """Trip destinations: displacements with a heavy-tailed (log-normal) length around the origin,
    kept in proportion to the target cell's attractiveness. Falls back to the origin if no candidate
    lands on an attractive cell."""
    n = len(origin)
    ox, oy = cell_xy(origin)
    med = np.broadcast_to(np.asarray(median_cells, dtype=np.float32), (n,))
    # float32 throughout: this runs for every trip of every user-day.
    r = np.exp(np.float32(sigma) * rng.standard_normal((n, candidates), dtype=np.float32)) * med[:, None]
    a = rng.random((n, candidates), dtype=np.float32) * np.float32(2 * np.pi)
    cx = np.rint(ox[:, None] + r * np.cos(a)).astype(np.int32)  # (n, m)
    cy = np.rint(oy[:, None] + r * np.sin(a)).astype(np.int32)
    inside = (cx >= 1) & (cx <= GRID_SIZE) & (cy >= 1) & (cy <= GRID_SIZE)
    cid = np.where(inside, (cy - 1) * GRID_SIZE + (cx - 1), 0)
    w = np.where(inside, attract[cid], 0.0).astype(np.float32)
    with np.errstate(divide="ignore"):
        k = _gumbel_argmax(np.log(w), rng)
    pick = cid[np.arange(n), k]
    ok = w[np.arange(n), k] > 0
    return np.where(ok, pick, origin).astype(np.int32)

