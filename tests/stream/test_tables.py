"""The in-memory slot tables (pure): latest ping per user and slot, windows, bounded uid interning."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

import stream.windows.tables as tables
from stream.windows.tables import PartitionTables, latest_per_user


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 9)), min_size=1, max_size=40),
       st.randoms(use_true_random=False))
def test_latest_wins_whatever_the_order_and_the_batching(rows, rnd):
    want = {}
    for u, t, c in rows:
        want[u] = max(want.get(u, (t, c)), (t, c))
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    p = PartitionTables()
    cut = rnd.randrange(len(shuffled) + 1)
    for part in (shuffled[:cut], shuffled[cut:]):
        if part:
            u, t, c = (np.array(x) for x in zip(*part))
            p.add("A", 0, p.uids.encode([str(v) for v in u.tolist()]), t, c)
    uids, cells = p.windows("A", 0)
    assert {int(u): int(c) for u, c in zip(uids, cells[:, -1])} == {u: c for u, (t, c) in want.items()}


def test_reduction_keeps_one_sorted_row_per_user():
    uid, ts, cell = latest_per_user(np.array([3, 1, 3, 1]), np.array([5, 9, 5, 2]), np.array([1, 2, 7, 4]))
    assert uid.tolist() == [1, 3] and ts.tolist() == [9, 5] and cell.tolist() == [2, 7]  # tie -> larger cell


def test_windows_read_the_eight_slots_back_and_forget_old_ones():
    p = PartitionTables()
    for slot, cell in ((0, 10), (3, 13), (7, 17), (8, 18)):
        p.add("A", slot, p.uids.encode(["u"]), np.array([slot]), np.array([cell]))
    uids, cells = p.windows("A", 8)
    assert uids == ["u"] and cells.tolist() == [[-1, -1, 13, -1, -1, -1, 17, 18]]  # slots 1..8
    p.forget_before(2)
    assert sorted(s for _, s in p.tables) == [3, 7, 8]


def test_dead_uids_leave_the_interner(monkeypatch):
    monkeypatch.setattr(tables, "COMPACT_AT", 10)
    p = PartitionTables()
    for slot in range(30):  # a new user every slot: each lives in one slot only
        p.add("A", slot, p.uids.encode([f"user{slot}"]), np.array([1]), np.array([slot]))
        p.forget_before(slot - 7)
    assert len(p.uids.names) < 20
    uids, cells = p.windows("A", 29)
    assert uids == ["user29"] and cells[0, -1] == 29
    assert p.windows("A", 25)[0] == ["user25"]
