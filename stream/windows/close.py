"""Closing a slot (pure): per-user windows -> the slot's flow channels, by the shared flow definition."""

from __future__ import annotations

import numpy as np

from models.flows import NO_CELL, previous_cell, step_cells


def slot_flows(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cells (N, 8) of the users seen in the closing slot (column 7; -1 = unseen) -> (cell ids (K,), counts (K, 3)).

    Rows whose last column is unseen (a user key that expired) are ignored.
    """
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 8)
    cells = cells[cells[:, -1] >= 0]
    if len(cells) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 3), dtype=np.int64)
    observed = cells >= 0  # (N, 8)
    occ, inflow, outflow = step_cells(cells[:, -1], previous_cell(cells, observed))
    hits = [t[t != NO_CELL] for t in (occ, inflow, outflow)]
    key = np.concatenate([h * 3 + ch for ch, h in enumerate(hits)])
    uniq, counts = np.unique(key, return_counts=True)
    cell_ids, inv = np.unique(uniq // 3, return_inverse=True)
    out = np.zeros((len(cell_ids), 3), dtype=np.int64)  # (K, 3)
    out[inv.reshape(-1), uniq % 3] = counts
    return cell_ids, out

