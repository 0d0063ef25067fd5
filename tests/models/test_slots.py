"""Slot maths: dataset (d, t) and event time agree, replay jitter stays inside its slot."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from models import slots


@given(st.integers(0, 74), st.integers(0, 47), st.integers(0, 10**6))
def test_replay_ts_stays_in_its_slot(d, t, uid):
    ts = slots.replay_ts(np.array([d]), np.array([t]), np.array([uid]))[0]
    s = slots.slot_of(float(ts))
    assert slots.dt_from_slot(s) == (d, t)
    assert slots.slots_of(np.array([ts]))[0] == s


def test_slot_boundaries():
    o = slots.DEFAULT_ORIGIN
    assert slots.slot_of(o) == 0
    assert slots.slot_of(o + 1799.999) == 0
    assert slots.slot_of(o + 1800) == 1
    assert slots.slot_of(o - 0.001) == -1
    assert slots.slot_start(97) == o + 97 * 1800


def test_window_and_weekday():
    assert list(slots.window_slots(10)) == list(range(3, 11))
    assert slots.weekday(0) == 0 and slots.is_weekend(5) and slots.is_weekend(6) and not slots.is_weekend(7)
