"""User profiles from window embeddings (models.profiles): the windows they pool and the routine summary."""

import numpy as np

from models.profiles import (
    GEOMETRY,
    PHASES,
    ROUTINE,
    SUMMARY,
    profile_windows,
    routine,
    summary,
)
from models.windows import windows_for

NIGHT, MORNING, AFTERNOON, LATE = 7, 23, 31, 47  # end slots of tiles in parts 0, 2, 3, 5 of a day (phase 7)


def test_profile_windows_cover_every_observation_once_per_phase():
    rng = np.random.default_rng(3)
    uid = np.repeat([4, 9], 60)
    slot = np.concatenate([np.sort(rng.choice(3 * 48, 60, replace=False)) for _ in range(2)])
    x, y = rng.integers(1, 201, 120), rng.integers(1, 201, 120)
    w = profile_windows(uid, slot, x, y)
    assert np.all(np.diff(w.uid * 10_000 + w.end_slot) > 0)  # sorted by (uid, end slot), no repeat
    for phase in PHASES:
        sel = w.end_slot % 8 == phase
        covered = [(u, e - 7 + j) for u, e, m in zip(w.uid[sel], w.end_slot[sel], w.mask[sel]) for j in np.flatnonzero(m)]
        assert sorted(covered) == sorted(zip(uid.tolist(), slot.tolist()))
    ref = windows_for(uid, slot, x, y, w.uid, w.end_slot)
    assert np.array_equal(ref.x, w.x) and np.array_equal(ref.mask, w.mask)


def commuter_and_stayer(days=5):
    """User 1 sleeps at [0, +-1] and spends weekday 08:00-16:00 at [10, 0]; user 2 never leaves [0, +-1]."""
    rows = []
    for d in range(days):
        wobble = 1.0 if d % 2 else -1.0
        for end in (NIGHT, LATE):
            rows += [(1, d * 48 + end, 0.0, wobble), (2, d * 48 + end, 0.0, wobble)]
        for end in (MORNING, AFTERNOON):
            rows += [(1, d * 48 + end, 10.0, 0.0), (2, d * 48 + end, 0.0, wobble)]
    a = np.array(rows)
    return a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2:].astype(np.float32)


def test_routine_sees_a_workplace_away_from_home():
    uid, end, emb = commuter_and_stayer(days=4)  # Mon-Thu: night wobbles cancel, home = [0, 0]; scale = 1
    users, r = routine(uid, end, emb)
    assert users.tolist() == [1, 2] and r.shape == (2, ROUTINE)
    per_bucket = r[:, :48].reshape(2, 12, 4)  # mean, max distance to home, share further than 2, than 4
    assert np.allclose(per_bucket[0, 2], [10, 10, 1, 1]) and np.allclose(per_bucket[0, 0], [1, 1, 0, 0])
    assert np.allclose(per_bucket[1, 2], [1, 1, 0, 0])
    days_f = r[:, 48:60]  # share of weekdays further than 2, 3, 4, 6; mean, std, median; per weekday sorted
    assert np.allclose(days_f[0, :7], [1, 1, 1, 1, 10, 0, 10]) and np.allclose(days_f[0, 7:], [10, 10, 10, 10, 0])
    assert np.allclose(days_f[1, :4], 0)
    work_f = r[:, 60:64]  # a day's away mean to work, away windows to work, log(1 + away windows), work-home
    assert np.allclose(work_f[0], [0, 0, np.log1p(8), 10]) and np.allclose(work_f[1], 0)
    near_work = r[:, 64:136].reshape(2, 12, 6)  # to work, / (1 + work-home), within 2, 4 of work, elsewhere 2, 4
    assert np.allclose(near_work[0, 2], [0, 0, 1, 1, 0, 0]) and np.isclose(near_work[0, 0, 0], np.sqrt(101))
    assert np.allclose(r[0, 136:], 0)  # the same workplace every day: nearest other-day window at distance 0


def test_summary_is_one_block_per_phase_and_scale_free():
    uid, end, emb = commuter_and_stayer()
    _, s = summary(uid, end, emb)
    assert s.shape == (2, SUMMARY) and SUMMARY == len(PHASES) * (GEOMETRY + ROUTINE)
    assert s[:, GEOMETRY + ROUTINE :].sum() == 0  # every window ends at phase 7: the other blocks are empty
    _, scaled = summary(uid, end, emb * 3)
    geo = np.r_[0 : 2 * 12 + 66]  # away, spread, between-bucket distances scale; routine does not
    r = slice(GEOMETRY, GEOMETRY + ROUTINE)
    assert np.allclose(scaled[:, r], s[:, r], atol=1e-5) and np.allclose(scaled[:, geo], 3 * s[:, geo], atol=1e-4)
