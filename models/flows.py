"""The flow definition (occupancy, inflow, outflow per cell and slot), as pure numpy shared offline and online.

design.md "Time and windows": a user's previous observation is their most recent observed slot
among the `LOOKBACK` = 7 slots before (older ones are forgotten); masked (999, 999) rows are not
observations. For (cell, slot):
  occupancy  distinct users whose cell in the slot is this cell
  inflow     those of them whose previous observation was another cell
  outflow    users whose previous observation was this cell and whose cell in the slot is another
             one (counted in the slot of the new observation)
`training/flow_build.py` computes the same numbers in DuckDB; tests prove they agree.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from models.exceptions import ModelsError
from models.grid import GRID_SIZE, cell_id, in_grid, is_masked
from models.slots import WINDOW_SLOTS

LOOKBACK = WINDOW_SLOTS - 1
CHANNELS = ("occupancy", "inflow", "outflow")
NO_CELL = -1


class FlowError(ModelsError):
    """Input to a flow function breaks its contract (unsorted, duplicate slot, off-grid cell)."""


class FlowCounts(NamedTuple):
    """Sparse flow channels: one row per (slot, cell) with any non-zero channel, sorted by (slot, cell)."""

    slot: np.ndarray  # (K,) int64
    cell: np.ndarray  # (K,) int64 dense cell id
    counts: np.ndarray  # (K, 3) int64: occupancy, inflow, outflow


def step_cells(cell: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user-step: the cells that get +1 occupancy, +1 inflow, +1 outflow (NO_CELL = none).

    `cell` is the user's cell in the new slot, `prev` their previous observed cell within the
    lookback (NO_CELL if none). Works on scalars or arrays; the stream calls this per closed slot.
    """
    cell = np.asarray(cell, dtype=np.int64)
    prev = np.asarray(prev, dtype=np.int64)
    moved = (prev != NO_CELL) & (prev != cell)
    return cell, np.where(moved, cell, NO_CELL), np.where(moved, prev, NO_CELL)


def previous_cell(cells: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Previous observation from per-user windows: cells (N, 8) oldest first, observed (N, 8) bool.

    Looks at the 7 slots before the last one and returns the most recent observed cell, or NO_CELL.
    """
    cells = np.asarray(cells, dtype=np.int64)[:, :-1]  # (N, 7) the slots before now
    observed = np.asarray(observed, dtype=bool)[:, :-1]
    last = observed.shape[1] - 1 - np.argmax(observed[:, ::-1], axis=1)  # (N,) most recent observed
    got = cells[np.arange(len(cells)), last]
    return np.where(observed.any(axis=1), got, NO_CELL)


def observations(uid, slot, x, y, size: int = GRID_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop masked rows and map (x, y) to dense cell ids; rows must be sorted by (uid, slot), one per slot."""
    uid, slot, x, y = (np.asarray(a, dtype=np.int64) for a in (uid, slot, x, y))
    keep = ~is_masked(x, y)
    uid, slot, x, y = uid[keep], slot[keep], x[keep], y[keep]
    bad = ~in_grid(x, y, size)
    if bad.any():
        i = int(np.argmax(bad))
        raise FlowError(f"row with uid={uid[i]} slot={slot[i]} has cell ({x[i]}, {y[i]}) outside the {size}x{size} grid")
    same_user = uid[1:] == uid[:-1]
    order_bad = (uid[1:] < uid[:-1]) | (same_user & (slot[1:] <= slot[:-1]))
    if order_bad.any():
        i = int(np.argmax(order_bad)) + 1
        raise FlowError(
            f"rows must be sorted by (uid, slot) with one row per user and slot; row {i} "
            f"(uid={uid[i]}, slot={slot[i]}) follows (uid={uid[i - 1]}, slot={slot[i - 1]})"
        )
    return uid, slot, cell_id(x, y, size)


def previous_cells(uid: np.ndarray, slot: np.ndarray, cell: np.ndarray, lookback: int = LOOKBACK) -> np.ndarray:
    """For observations sorted by (uid, slot): each row's previous observed cell within `lookback` slots."""
    prev = np.full(len(cell), NO_CELL, dtype=np.int64)
    if len(cell) > 1:
        linked = (uid[1:] == uid[:-1]) & (slot[1:] - slot[:-1] <= lookback)
        prev[1:] = np.where(linked, cell[:-1], NO_CELL)
    return prev


def flow_counts(uid, slot, x, y, size: int = GRID_SIZE) -> FlowCounts:
    """The flow channels of a dataset given as arrays sorted by (uid, slot)."""
    uid, slot, cell = observations(uid, slot, x, y, size)
    prev = previous_cells(uid, slot, cell)
    occ, inflow, outflow = step_cells(cell, prev)
    ncell = size * size
    keys, chans = [], []
    for ch, target in enumerate((occ, inflow, outflow)):
        hit = target != NO_CELL
        keys.append(slot[hit] * ncell + target[hit])
        chans.append(np.full(int(hit.sum()), ch, dtype=np.int64))
    key = np.concatenate(keys)
    uniq, inv = np.unique(key, return_inverse=True)
    flat = inv.reshape(-1) * 3 + np.concatenate(chans)
    counts = np.bincount(flat, minlength=3 * len(uniq)).reshape(len(uniq), 3)  # (K, 3)
    return FlowCounts(uniq // ncell, uniq % ncell, counts)


def densify(fc: FlowCounts, cells: np.ndarray, slot0: int, n_slots: int, dtype=np.int32) -> np.ndarray:
    """Sparse counts -> dense (n_slots, len(cells), 3) array over the sorted active `cells` from `slot0`."""
    out = np.zeros((n_slots, len(cells), 3), dtype=dtype)
    pos = np.searchsorted(cells, fc.cell)
    ok = (pos < len(cells)) & (cells[np.minimum(pos, len(cells) - 1)] == fc.cell)
    ok &= (fc.slot >= slot0) & (fc.slot < slot0 + n_slots)
    out[fc.slot[ok] - slot0, pos[ok]] = fc.counts[ok]
    return out
