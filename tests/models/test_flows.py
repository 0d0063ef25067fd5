"""The flow definition: numpy functions against a plain pandas computation and hand-worked cases."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.flows import NO_CELL, FlowError, flow_counts, previous_cell, step_cells
from models.grid import cell_id


def random_dataset(seed: int, users: int = 40, days: int = 2, p_seen: float = 0.35, p_mask: float = 0.1, span: int = 4):
    """uid,d,t,x,y rows sorted by (uid, slot): sparse, some masked, users roaming a few cells."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        for s in np.flatnonzero(rng.random(days * 48) < p_seen):
            x, y = (999, 999) if rng.random() < p_mask else tuple(rng.integers(1, span + 1, 2))
            rows.append((u, s // 48, s % 48, x, y))
    return pd.DataFrame(rows, columns=["uid", "d", "t", "x", "y"])


def pandas_flows(df: pd.DataFrame) -> pd.DataFrame:
    """The definition written the plain way, row by row per user (the reference)."""
    obs = df[~((df.x == 999) & (df.y == 999))].copy()
    obs["slot"] = obs.d * 48 + obs.t
    obs["cell"] = (obs.y - 1) * 200 + (obs.x - 1)
    rows = []
    for _, g in obs.sort_values(["uid", "slot"]).groupby("uid"):
        last_slot, last_cell = None, None
        for slot, cell in zip(g.slot, g.cell):
            prev = last_cell if last_slot is not None and slot - last_slot <= 7 else None
            rows.append((slot, cell, 1, int(prev is not None and prev != cell), 0))
            if prev is not None and prev != cell:
                rows.append((slot, prev, 0, 0, 1))
            last_slot, last_cell = slot, cell
    out = pd.DataFrame(rows, columns=["slot", "cell", "occupancy", "inflow", "outflow"])
    return out.groupby(["slot", "cell"], as_index=False).sum().sort_values(["slot", "cell"]).reset_index(drop=True)


def as_frame(fc) -> pd.DataFrame:
    df = pd.DataFrame({"slot": fc.slot, "cell": fc.cell, "occupancy": fc.counts[:, 0], "inflow": fc.counts[:, 1], "outflow": fc.counts[:, 2]})
    return df.sort_values(["slot", "cell"]).reset_index(drop=True)


def numpy_flows(df: pd.DataFrame):
    return flow_counts(df.uid.to_numpy(), (df.d * 48 + df.t).to_numpy(), df.x.to_numpy(), df.y.to_numpy())


@pytest.mark.parametrize("seed", range(5))
def test_numpy_equals_pandas(seed):
    df = random_dataset(seed)
    pd.testing.assert_frame_equal(as_frame(numpy_flows(df)), pandas_flows(df), check_dtype=False)


def test_hand_worked_user():
    # One user: cell a at slot 0, masked at 2, b at 5, b at 6, a at 20 (previous 6 is 14 slots back).
    a, b = (1, 1), (2, 1)
    df = pd.DataFrame([(0, 0, 0, *a), (0, 0, 2, 999, 999), (0, 0, 5, *b), (0, 0, 6, *b), (0, 0, 20, *a)], columns=["uid", "d", "t", "x", "y"])
    got = as_frame(numpy_flows(df))
    ca, cb = cell_id(1, 1), cell_id(2, 1)
    want = [(0, ca, 1, 0, 0), (5, ca, 0, 0, 1), (5, cb, 1, 1, 0), (6, cb, 1, 0, 0), (20, ca, 1, 0, 0)]
    assert [tuple(r) for r in got.itertuples(index=False)] == want


def test_lookback_boundary():
    # 7 slots apart is still "previous" (inside the 8-slot window); 8 apart is forgotten.
    for gap, moved in ((7, 1), (8, 0)):
        df = pd.DataFrame([(0, 0, 0, 1, 1), (0, 0, gap, 2, 2)], columns=["uid", "d", "t", "x", "y"])
        got = as_frame(numpy_flows(df))
        assert got.inflow.sum() == moved and got.outflow.sum() == moved


def test_step_cells_and_previous_cell():
    occ, inn, out = step_cells(np.array([5, 5, 5]), np.array([NO_CELL, 5, 7]))
    assert occ.tolist() == [5, 5, 5] and inn.tolist() == [NO_CELL, NO_CELL, 5] and out.tolist() == [NO_CELL, NO_CELL, 7]
    cells = np.array([[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 8], [0] * 8])
    seen = np.array([[1, 0, 1, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 1]], dtype=bool)
    assert previous_cell(cells, seen).tolist() == [3, 7, NO_CELL]


def test_rejects_unsorted_duplicate_and_off_grid():
    with pytest.raises(FlowError, match="sorted"):
        flow_counts([0, 0], [3, 3], [1, 2], [1, 1])
    with pytest.raises(FlowError, match="outside"):
        flow_counts([0], [3], [0], [1])


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_stream_steps_match_batch(seed):
    """Replaying slot by slot with per-user 8-slot windows (the online way) gives the batch counts."""
    df = random_dataset(seed, users=5, days=1, p_seen=0.5)
    df["slot"] = df.d * 48 + df.t
    batch = as_frame(numpy_flows(df))
    seen = {}  # uid -> {slot: cell}
    rows = []
    for slot in range(48):
        now = df[(df.slot == slot) & (df.x != 999)]
        for uid, x, y in zip(now.uid, now.x, now.y):
            hist = seen.setdefault(uid, {})
            window = [hist.get(s, 0) for s in range(slot - 7, slot)] + [cell_id(x, y)]
            mask = [s in hist for s in range(slot - 7, slot)] + [True]
            prev = previous_cell(np.array([window]), np.array([mask]))[0]
            occ, inn, out = step_cells(cell_id(x, y), prev)
            rows += [(slot, int(occ), 1, 0, 0)] + ([(slot, int(inn), 0, 1, 0), (slot, int(out), 0, 0, 1)] if inn != NO_CELL else [])
            hist[slot] = cell_id(x, y)
    online = pd.DataFrame(rows, columns=["slot", "cell", "occupancy", "inflow", "outflow"])
    online = online.groupby(["slot", "cell"], as_index=False).sum().sort_values(["slot", "cell"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(batch, online, check_dtype=False)
