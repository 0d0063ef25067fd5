"""Offline encoder datasets on a tiny hand-made city: user split, (window, next window) pairs, labels paths.

`toy_city` is also the fixture data of the other encoder tests (train, evaluate, embed).
"""

import numpy as np
import pandas as pd

from training.encoder_data import from_columns, labels_path_for, load_observations, make_pairs, poi_path_for, sample_per_user, split_by_user, split_validation


def toy_city(folder, users=60, days=7, seed=0):
    """A tiny YJMob-format city: even uids commute on weekdays 09:00-18:00 to a cell 15-25 cells away."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for u in range(users):
        home = rng.integers(60, 140, 2)
        work = home + rng.choice([-1, 1], 2) * rng.integers(15, 25, 2)
        commuter = u % 2 == 0
        labels.append((u, *home, *work, int(commuter)))
        for d in range(days):
            for t in range(48):
                if rng.random() > 0.35:
                    continue
                at_work = commuter and d % 7 < 5 and 18 <= t < 36
                cell = work if at_work else home + rng.integers(-1, 2, 2) * (rng.random() < 0.2)
                rows.append((u, d, t, *cell))
    rows.append((users - 1, 0, 0, 999, 999))  # a masked record: never a location
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "cityT_challengedata.csv"
    pd.DataFrame(rows, columns=["uid", "d", "t", "x", "y"]).to_csv(data, index=False)
    pd.DataFrame(labels, columns=["uid", "home_x", "home_y", "work_x", "work_y", "commuter"]).to_csv(folder / "labels_cityT.csv", index=False)
    cells = pd.DataFrame(rows, columns=["uid", "d", "t", "x", "y"]).query("x != 999")[["x", "y"]].drop_duplicates()
    cells["category"] = (cells["x"] // 20 + cells["y"] // 20) % 3
    cells["POI_count"] = 1 + (cells["x"] % 4)
    cells.to_csv(folder / "POIdata_cityT.csv", index=False)
    return data


def test_load_split_and_pairs(tmp_path):
    data = toy_city(tmp_path)
    assert labels_path_for(data).is_file() and poi_path_for(data).is_file()
    obs = load_observations(data)
    assert not (obs.x == 999).any()
    train, test = split_by_user(obs, 40)
    assert train.uid.max() < 40 <= test.uid.min()
    fit, val = split_validation(train, 0.25, 0)
    assert not set(fit.uid) & set(val.uid) and len(np.unique(val.uid)) == 10
    p = make_pairs(train)
    assert p.inp.shape[1:] == (8, 5) and p.target.shape[1:] == (8, 2)
    assert (p.inp[:, -1, 4] == 1).all()  # every window ends at an observation
    assert (p.target[..., 0] > 0).any(axis=1).all()  # and its next window holds one
    assert len(make_pairs(train, np.random.default_rng(0), per_user=3)) <= 3 * 40


def test_pair_target_is_the_next_window():
    obs = from_columns([1, 1, 1], [0, 0, 0], [3, 9, 12], [10, 20, 30], [11, 21, 31])
    p = make_pairs(obs)
    first = p.inp[0]
    assert first[-1, 0] == 10  # window ending at slot 3
    assert p.target[0, :, 0].tolist() == [0, 0, 0, 0, 0, 20, 0, 0]  # slots 4..11: slot 9 -> position 5


def test_sample_per_user_caps_each_user():
    uid = np.array([1] * 10 + [2] * 3 + [1] * 5)
    idx = sample_per_user(uid, 4, np.random.default_rng(0))
    assert np.bincount(uid[idx]).tolist() == [0, 4, 3]
