"""A partition's open windows in memory (pure numpy): per (city, slot), each user's latest ping.

The worker owns a partition's users, so it keeps their last slots here and reads windows without
Redis; Redis holds the durable copy (stream.windows.wal) it reloads from on assignment. Per-ping
work is array appends; the "latest event time wins" rule runs once per slot table, vectorised.
"""

from __future__ import annotations

import numpy as np

from models.slots import WINDOW_SLOTS

COMPACT_AT = 200_000  # interned uids past which dead ones are dropped


class Interner:
    """uid strings <-> dense int codes, so tables and lookups are integer arrays."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names: list[str] = names or []
        self.code: dict[str, int] = {u: i for i, u in enumerate(self.names)}

    def encode(self, uids: list[str]) -> np.ndarray:
        code, names = self.code, self.names
        get = code.get
        out = np.fromiter((get(u, -1) for u in uids), dtype=np.int64, count=len(uids))
        if (out < 0).any():
            for i in np.flatnonzero(out < 0).tolist():
                u = uids[i]
                c = get(u)
                if c is None:
                    c = code[u] = len(names)
                    names.append(u)
                out[i] = c
        return out

    def decode(self, codes: np.ndarray) -> list[str]:
        names = self.names
        return [names[c] for c in codes.tolist()]


def latest_per_user(uid: np.ndarray, ts_ms: np.ndarray, cell: np.ndarray):
    """Rows reduced to one per uid: the latest event time, ties to the larger cell (the order-free rule
    that makes redelivered or reordered pings leave the same state). Returns sorted unique uids."""
    order = np.lexsort((cell, ts_ms, uid))  # last row of each uid group wins
    uid, ts_ms, cell = uid[order], ts_ms[order], cell[order]
    last = np.ones(len(uid), dtype=bool)
    last[:-1] = uid[1:] != uid[:-1]
    return uid[last], ts_ms[last], cell[last]


class SlotTable:
    """One (city, slot) of a partition: sorted unique uid codes with their latest ping, plus appended rows
    not yet reduced (reduced when read, or when they outgrow the reduced part)."""

    __slots__ = ("uid", "ts", "cell", "_pending", "_n_pending")

    def __init__(self) -> None:
        self.uid = np.zeros(0, dtype=np.int64)
        self.ts = np.zeros(0, dtype=np.int64)
        self.cell = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._n_pending = 0

    def add(self, uid: np.ndarray, ts_ms: np.ndarray, cell: np.ndarray) -> None:
        self._pending.append((uid, ts_ms, cell))
        self._n_pending += len(uid)
        if self._n_pending > max(4096, 2 * len(self.uid)):  # amortised: a reduction per doubling
            self.reduce()

    def reduce(self) -> None:
        if not self._pending:
            return
        parts = [(self.uid, self.ts, self.cell), *self._pending]
        self.uid, self.ts, self.cell = latest_per_user(*(np.concatenate(c) for c in zip(*parts)))
        self._pending, self._n_pending = [], 0

    def lookup(self, uids: np.ndarray) -> np.ndarray:
        """Cells of `uids` in this slot, -1 where the user was not seen."""
        self.reduce()
        if len(self.uid) == 0:
            return np.full(len(uids), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.uid, uids), len(self.uid) - 1)
        return np.where(self.uid[at] == uids, self.cell[at], -1)


class PartitionTables:
    """All (city, slot) tables of one partition, and the windows read from them."""

    def __init__(self) -> None:
        self.uids = Interner()
        self.tables: dict[tuple[str, int], SlotTable] = {}

    def add(self, city: str, slot: int, uid: np.ndarray, ts_ms: np.ndarray, cell: np.ndarray) -> None:
        t = self.tables.get((city, slot))
        if t is None:
            t = self.tables[(city, slot)] = SlotTable()
        t.add(uid, ts_ms, cell)

    def windows(self, city: str, slot: int, full: bool = True) -> tuple[list[str], np.ndarray]:
        """The users seen in (city, slot) and their cells in slots slot-7..slot, (N, 8) with -1 = unseen.

        Users come in uid-code order (deterministic for a given load order; flows do not depend on it)."""
        t = self.tables.get((city, slot))
        if t is None:
            return [], np.zeros((0, WINDOW_SLOTS), dtype=np.int64)
        t.reduce()
        users = t.uid
        cells = np.full((len(users), WINDOW_SLOTS), -1, dtype=np.int64)  # (N, 8)
        cells[:, -1] = t.cell
        for k in range(1, WINDOW_SLOTS):
            past = self.tables.get((city, slot - k))
            if past is not None:
                cells[:, -1 - k] = past.lookup(users)
        return self.uids.decode(users), cells

    def forget_before(self, slot: int) -> None:
        """Drop every table of a slot older than `slot` (no window needs it any more), and the uids no table
        holds once they outnumber the live ones (a stream of ever-new ids must not grow the interner forever)."""
        for key in [k for k in self.tables if k[1] < slot]:
            del self.tables[key]
        if len(self.uids.names) > COMPACT_AT:
            for t in self.tables.values():
                t.reduce()
            live = np.unique(np.concatenate([t.uid for t in self.tables.values()] or [np.zeros(0, np.int64)]))
            if len(self.uids.names) > 2 * len(live) + COMPACT_AT // 2:
                for t in self.tables.values():
                    t.uid = np.searchsorted(live, t.uid)  # an order-keeping renumbering: tables stay sorted
                self.uids = Interner(self.uids.decode(live))

    def cities(self) -> set[str]:
        return {c for c, _ in self.tables}
