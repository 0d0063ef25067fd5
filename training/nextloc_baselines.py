"""Next-location baselines: persistence and a first-order Markov chain with h-step transition tables.

The Markov model counts, over the training users, pairs (cell at slot s, cell at slot s + h) where the
user is observed at both slots, for each horizon h separately (a direct h-step table, not a chained
1-step one: the 1-step table raised to a power smears probability over cells nobody goes to). A cell
never seen as a source backs off to persistence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.nextloc_data import Sequences


def pairs_at(seqs: Sequences, h: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows i, rows j) of the same user with slot[j] == slot[i] + h."""
    owner = seqs.owner
    key = owner.astype(np.int64) * (1 << 32) + seqs.slot  # sorted: rows are by user, then slot
    j = np.searchsorted(key, key + h)
    ok = j < len(key)
    ok[ok] = key[j[ok]] == key[ok] + h
    return np.flatnonzero(ok), j[ok]


@dataclass(frozen=True)
class Markov:
    """Per horizon h (1-based): sorted source cells and their top destinations by count (-1 padded)."""

    sources: tuple[np.ndarray, ...]
    top: tuple[np.ndarray, ...]

    @property
    def horizons(self) -> int:
        return len(self.sources)

    def rank(self, h: int, cells: np.ndarray, k: int) -> np.ndarray:
        """(N, k) ranked guesses for the cell h slots after `cells`; unseen sources back off to persistence,
        and persistence fills a ranking that has fewer than k destinations."""
        h = min(max(h, 1), self.horizons)
        src, top = self.sources[h - 1], self.top[h - 1]
        cells = np.asarray(cells, dtype=np.int64)
        out = np.full((len(cells), k), -1, dtype=np.int64)
        if len(src):
            pos = np.searchsorted(src, cells).clip(max=len(src) - 1)
            seen = src[pos] == cells
            width = min(k, top.shape[1])
            out[seen, :width] = top[pos[seen], :width]
        missing = ~(out == cells[:, None]).any(axis=1)
        # put persistence in the first free place (position 0 for unseen sources)
        free = (out < 0).argmax(axis=1)
        fill = missing & (out < 0).any(axis=1)
        out[np.flatnonzero(fill), free[fill]] = cells[fill]
        return out


def fit_markov(seqs: Sequences, horizons: int, k: int = 5) -> Markov:
    """Count h-step transitions for h = 1..horizons and keep each source's k most frequent destinations."""
    sources, tops = [], []
    for h in range(1, horizons + 1):
        i, j = pairs_at(seqs, h)
        src, dst = seqs.cell[i], seqs.cell[j]
        pair, count = np.unique(src * (1 << 20) + dst, return_counts=True)
        src, dst = pair >> 20, pair & ((1 << 20) - 1)
        # by source, then by count descending, ties to the smaller destination cell
        order = np.lexsort((dst, -count, src))
        src, dst = src[order], dst[order]
        starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]]) if len(src) else np.zeros(0, np.int64)
        rank = np.arange(len(src)) - np.repeat(starts, np.diff(np.r_[starts, len(src)]))
        keep = rank < k
        uniq = src[starts]
        top = np.full((len(uniq), k), -1, dtype=np.int64)
        top[np.searchsorted(uniq, src[keep]), rank[keep]] = dst[keep]
        sources.append(uniq)
        tops.append(top)
    return Markov(tuple(sources), tuple(tops))


def markov_chain(markov: Markov, start_cell: np.ndarray, start_slot: np.ndarray, step_slots: np.ndarray) -> np.ndarray:
    """Chained top-1 predictions along many trajectories at once.

    start_cell/start_slot (U,): each trajectory's last known observation; step_slots (U, S): the slots to
    predict in order, -1 where a trajectory has fewer steps. Gaps longer than the longest table use it.
    """
    cell = np.asarray(start_cell, dtype=np.int64).copy()
    prev = np.asarray(start_slot, dtype=np.int64).copy()
    out = np.full(step_slots.shape, -1, dtype=np.int64)
    for s in range(step_slots.shape[1]):
        live = step_slots[:, s] >= 0
        gaps = step_slots[live, s] - prev[live]
        nxt = cell[live].copy()
        for h in np.unique(np.minimum(gaps, markov.horizons)):
            sel = np.minimum(gaps, markov.horizons) == h
            nxt[sel] = markov.rank(int(h), cell[live][sel], 1)[:, 0]
        cell[live], prev[live] = nxt, step_slots[live, s]
        out[live, s] = nxt
    return out
