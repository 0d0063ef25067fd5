"""The 8-slot window definition on hand-made cases: latest ping wins, 999 ignored, the 8-slot boundary."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.windows import PAD, latest_per_slot, model_input, tiled_windows, windows_at, windows_at_observations, windows_for


def test_latest_ping_in_a_slot_wins_by_order_and_by_event_time():
    uid, slot, x, y = [1, 1, 1], [5, 5, 5], [10, 11, 12], [20, 21, 22]
    assert latest_per_slot(uid, slot, x, y)[2].tolist() == [12]
    # event times say the middle row is the latest although it is not last in the file
    w = windows_at(uid, slot, x, y, end_slot=5, ts=[100.0, 300.0, 200.0])
    assert w.x[0, -1] == 11 and w.y[0, -1] == 21


def test_masked_999_rows_are_not_observations():
    w = windows_at([1, 1, 2], [3, 4, 4], [7, 999, 999], [8, 999, 999], end_slot=4)
    assert w.uid.tolist() == [1]  # user 2 has only a masked record: not seen in the window
    assert w.mask[0].tolist() == [False] * 6 + [True, False]
    assert w.x[0, 7] == PAD and w.x[0, 6] == 7


def test_eight_slot_boundary():
    # slot 2 is 8 slots before 10 (outside); slot 3 is the oldest slot inside the window ending at 10
    w = windows_at([1, 1, 1, 1], [2, 3, 10, 11], [1, 2, 3, 4], [1, 2, 3, 4], end_slot=10)
    assert w.mask[0].tolist() == [True] + [False] * 6 + [True]
    assert w.x[0].tolist() == [2, 0, 0, 0, 0, 0, 0, 3]


def test_windows_at_observations_and_tiles_agree_with_the_online_window():
    rng = np.random.default_rng(1)
    n = 400
    uid, slot = rng.integers(0, 5, n), rng.integers(0, 60, n)
    x, y = rng.integers(1, 201, n), rng.integers(1, 201, n)
    x[:20] = y[:20] = 999
    for w in (windows_at_observations(uid, slot, x, y), tiled_windows(uid, slot, x, y)):
        for i in range(0, len(w), 7):
            online = windows_at(uid, slot, x, y, int(w.end_slot[i]))
            j = int(np.flatnonzero(online.uid == w.uid[i])[0])
            assert (online.x[j] == w.x[i]).all() and (online.mask[j] == w.mask[i]).all()
    t = tiled_windows(uid, slot, x, y)
    assert t.mask.sum() == len(latest_per_slot(uid, slot, x, y)[0])  # every observation in exactly one tile


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 30), st.integers(1, 200)), min_size=1, max_size=60), st.integers(0, 30))
def test_window_holds_exactly_the_last_ping_of_each_slot(rows, end):
    uid, slot, x = (np.array(c) for c in zip(*rows))
    w = windows_for(uid, slot, x, x, np.unique(uid), np.full(len(np.unique(uid)), end))
    for k, u in enumerate(np.unique(uid)):
        for col, s in enumerate(range(end - 7, end + 1)):
            hits = np.flatnonzero((uid == u) & (slot == s))
            assert w.mask[k, col] == (len(hits) > 0)
            if len(hits):
                assert w.x[k, col] == x[hits[-1]]


def test_model_input_time_features():
    inp = model_input(np.ones((1, 8)), np.ones((1, 8)), np.ones((1, 8), bool), end_slot=48 * 5 + 2)  # Saturday 01:00
    assert inp[0, :, 2].tolist() == [43, 44, 45, 46, 47, 0, 1, 2]
    assert inp[0, :, 3].tolist() == [4] * 5 + [5] * 3
