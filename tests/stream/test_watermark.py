"""Event-time maths: late verdicts depend only on the partition's order; slots close once and in order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.slots import DEFAULT_ORIGIN as O, SLOT_SECONDS as S
from stream.windows.close import slot_flows
from stream.windows.watermark import PartitionClock, classify, slots_to_close


def test_ping_for_closed_slot_is_late():
    ts = np.array([O + 10, O + S + 5, O + 20, O + S + 10], dtype=float)
    late, new_max = classify(ts, PartitionClock(), lateness=0)
    assert late.tolist() == [False, False, True, False] and new_max == O + S + 10


def test_lateness_keeps_slot_open():
    ts = np.array([O + S + 5, O + 20], dtype=float)
    assert classify(ts, PartitionClock(), lateness=60)[0].tolist() == [False, False]
    assert classify(ts, PartitionClock(), lateness=0)[0].tolist() == [False, True]


def test_stored_clock_counts():
    late, _ = classify(np.array([O + 5.0]), PartitionClock(max_ts=O + 2 * S), lateness=0)
    assert late.tolist() == [True]


def test_slots_to_close():
    rng, nxt = slots_to_close(PartitionClock(), O + 3 * S + 1, first_slot=1, lateness=0)
    assert list(rng) == [1, 2] and nxt == 3
    rng, nxt = slots_to_close(PartitionClock(O + 3 * S + 1, 3), O + 3 * S + 9, first_slot=3, lateness=0)
    assert list(rng) == [] and nxt == 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 20 * S), min_size=1, max_size=60), st.integers(1, 59), st.integers(0, 3 * S))
def test_split_batches_give_the_same_verdicts(offsets, cut, lateness):
    ts = O + np.array(offsets, dtype=float)
    whole, whole_max = classify(ts, PartitionClock(), lateness)
    cut = min(cut, len(ts))
    a, amax = classify(ts[:cut], PartitionClock(), lateness)
    b, bmax = classify(ts[cut:], PartitionClock(max_ts=amax), lateness)
    assert np.concatenate([a, b]).tolist() == whole.tolist() and bmax == whole_max


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 20 * S), min_size=1, max_size=40), st.integers(0, 2 * S))
def test_every_slot_closes_exactly_once_in_order(offsets, lateness):
    clock, closed = PartitionClock(), []
    for off in offsets:
        ts = np.array([O + off], dtype=float)
        late, new_max = classify(ts, clock, lateness)
        first = None if late[0] else int((ts[0] - O) // S)
        rng, nxt = slots_to_close(clock, new_max, first, lateness)
        closed.extend(rng)
        clock = PartitionClock(new_max, nxt)
    assert closed == sorted(set(closed)) and (not closed or closed == list(range(closed[0], closed[-1] + 1)))


def test_slot_flows_follow_the_definition():
    cells = np.full((4, 8), -1)
    cells[0, [2, 7]] = [10, 11]  # moved 10 -> 11
    cells[1, [6, 7]] = [11, 11]  # stayed in 11
    cells[2, 7] = 12  # first seen
    cells[3, 6] = 5  # not seen now: ignored
    cell_ids, counts = slot_flows(cells)
    assert dict(zip(cell_ids.tolist(), map(tuple, counts.tolist()))) == {10: (0, 0, 1), 11: (2, 1, 0), 12: (1, 0, 0)}
