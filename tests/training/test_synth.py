"""The synthetic city: deterministic bytes, the YJMob/HuMob schema, masking, and planted rhythms that
show in the data without being readable from a single rule."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.exceptions import TrainingError
from training.synth.generate import SynthSettings, generate

USERS, DAYS = 600, 21


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(SynthSettings(out=out, users=USERS, days=DAYS, mask_users=0.05, workers=1))
    return out


@pytest.fixture(scope="module")
def data(city):
    df = pd.read_csv(city / "cityA_challengedata.csv")
    lab = pd.read_csv(city / "labels_cityA.csv")
    m = df.merge(lab, on="uid")
    m = m[m.x != 999].copy()
    m["at_home"] = (m.x == m.home_x) & (m.y == m.home_y)
    m["at_work"] = (m.x == m.work_x) & (m.y == m.work_y) & ~m.at_home
    m["weekend"] = m.d % 7 >= 5
    return df, lab, m


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, city):
    a = tmp_path / "a"
    generate(SynthSettings(out=a, users=USERS, days=DAYS, mask_users=0.05, workers=1))
    assert _files(a) == _files(city)
    b = tmp_path / "b"
    generate(SynthSettings(out=b, users=USERS, days=DAYS, mask_users=0.05, seed=1, workers=1))
    for name in ("cityA_challengedata.csv", "POIdata_cityA.csv", "labels_cityA.csv"):
        assert (b / name).read_bytes() != (city / name).read_bytes()


def test_bytes_do_not_depend_on_worker_processes(tmp_path):
    st = dict(users=1100, days=7, cities="AD")  # three blocks of users in A
    generate(SynthSettings(out=tmp_path / "one", workers=1, **st))
    generate(SynthSettings(out=tmp_path / "two", workers=2, **st))
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_records_schema_ranges_and_order(city):
    raw = (city / "cityA_challengedata.csv").read_bytes()
    assert raw.startswith(b"uid,d,t,x,y\n") and raw.endswith(b"\n")
    a = np.loadtxt(city / "cityA_challengedata.csv", delimiter=",", skiprows=1, dtype=np.int64)
    uid, d, t, x, y = a.T
    assert set(np.unique(uid)) <= set(range(USERS)) and len(np.unique(uid)) > 0.98 * USERS
    assert d.min() >= 0 and d.max() == DAYS - 1 and t.min() >= 0 and t.max() <= 47
    masked = (x == 999) & (y == 999)
    assert np.all((x[~masked] >= 1) & (x[~masked] <= 200) & (y[~masked] >= 1) & (y[~masked] <= 200))
    assert not np.any((x == 999) ^ (y == 999))
    key = (uid * DAYS + d) * 48 + t
    assert np.all(np.diff(key) > 0), "rows must be sorted by uid, d, t with one record per slot"


def test_sparse_bursty_observation(data):
    df, lab, _ = data
    per_day = df.groupby(["uid", "d"]).size()
    assert 8 < per_day.mean() < 24  # YJMob100K: about 15 records per observed user-day
    assert per_day.quantile(0.9) > 2 * per_day.quantile(0.25)  # wide spread between users and days
    assert len(per_day) < 0.95 * USERS * DAYS  # some user-days are not seen at all
    per_user = df.groupby("uid").size() / DAYS
    assert per_user.quantile(0.9) > 2.5 * per_user.quantile(0.1)
    # bursty: an observed slot is usually followed by another one
    df = df.sort_values(["uid", "d", "t"])
    nxt = (df.uid.values[1:] == df.uid.values[:-1]) & (df.d.values[1:] == df.d.values[:-1])
    gaps = (df.t.values[1:] - df.t.values[:-1])[nxt]
    assert (gaps == 1).mean() > 0.4


def test_masked_rows_are_the_last_users_last_days(data):
    df, lab, _ = data
    n_mask = round(0.05 * USERS)
    first_day = DAYS - round(0.2 * DAYS)
    masked = df[df.x == 999]
    assert len(masked) > 0 and (masked.y == 999).all()
    assert masked.uid.min() >= USERS - n_mask and masked.d.min() >= first_day
    tail = df[(df.uid >= USERS - n_mask) & (df.d >= first_day)]
    assert (tail.x == 999).all()
    assert lab.masked.sum() == n_mask and lab[lab.masked == 1].uid.min() == USERS - n_mask


def test_no_masking_when_share_is_zero(tmp_path):
    generate(SynthSettings(out=tmp_path, users=200, days=14, mask_users=0.0, workers=1))
    assert b",999,999" not in (tmp_path / "cityA_challengedata.csv").read_bytes()


def test_labels_consistent_with_the_data(data):
    _, lab, m = data
    assert list(lab.columns[:6]) == ["uid", "home_x", "home_y", "work_x", "work_y", "commuter"]
    for c in ("home_x", "home_y", "work_x", "work_y"):
        assert lab[c].between(1, 200).all()
    assert 0.4 < lab.commuter.mean() < 0.8
    com_lab = lab[lab.commuter == 1]
    assert ((com_lab.work_x != com_lab.home_x) | (com_lab.work_y != com_lab.home_y)).all()
    weekday = m[~m.weekend & m.t.between(20, 32)]
    share = weekday.groupby("uid").at_work.mean()
    com = share[lab.set_index("uid").commuter.reindex(share.index) == 1]
    non = share[lab.set_index("uid").commuter.reindex(share.index) == 0]
    assert com.mean() > 0.4 and com.mean() > 2 * non.mean()
    assert (com < 0.15).any(), "some commuters are rarely seen at work (remote days, sparse data)"
    # Not one rule: students and night workers also have a second anchor they visit on a schedule.
    assert (non > 0.3).any()
    # Nights at home.
    assert m[m.t < 10].at_home.mean() > 0.8


def test_commuter_label_is_not_one_feature(data):
    _, lab, m = data
    km = np.hypot(lab.home_x - lab.work_x, lab.home_y - lab.work_y) * 0.5
    assert (km[lab.commuter == 1] <= 1.5).any(), "some commuters work close to home"
    cells = m.groupby("uid").apply(lambda g: len(set(zip(g.x, g.y))), include_groups=False)
    is_com = lab.set_index("uid").commuter.reindex(cells.index) == 1
    assert cells[~is_com].max() > cells[is_com].median(), "some non-commuters travel a lot"


def test_weekly_and_daily_rhythm(data):
    _, lab, m = data
    com = m[m.commuter == 1]
    work_wd = com[~com.weekend & com.t.between(20, 32)].at_work.mean()
    work_we = com[com.weekend & com.t.between(20, 32)].at_work.mean()
    assert work_we < 0.3 * work_wd
    # Moves (a new cell since the user's previous record that day) peak in the morning rush.
    m = m.sort_values(["uid", "d", "t"])
    same = (m.uid.values[1:] == m.uid.values[:-1]) & (m.d.values[1:] == m.d.values[:-1])
    moved = same & ((m.x.values[1:] != m.x.values[:-1]) | (m.y.values[1:] != m.y.values[:-1]))
    t = m.t.values[1:]
    rate = lambda lo, hi: moved[same & (t >= lo) & (t <= hi)].mean()  # noqa: E731
    assert rate(15, 19) > 2 * rate(2, 10)  # 7:30-10:00 versus 1:00-5:00
    # Fewer records at night than by day.
    hours = np.bincount(m.t // 2, minlength=24)
    assert hours[2:5].sum() < 0.3 * hours[12:15].sum()


def test_poi_file(city):
    poi = pd.read_csv(city / "POIdata_cityA.csv")
    assert list(poi.columns) == ["x", "y", "category", "POI_count"]
    assert poi.category.between(1, 85).all() and poi.category.nunique() == 85
    assert (poi.POI_count > 0).all() and poi.x.between(1, 200).all() and poi.y.between(1, 200).all()
    assert not poi.duplicated(["x", "y", "category"]).any()
    # A dense centre: the busiest 1% of POI cells hold a large share of all POIs.
    per_cell = poi.groupby(["x", "y"]).POI_count.sum().sort_values(ascending=False)
    assert per_cell.iloc[: max(1, len(per_cell) // 100)].sum() > 0.05 * per_cell.sum()


def test_meta_and_cities(tmp_path):
    r = generate(SynthSettings(out=tmp_path, users=400, days=7, cities="ABCD", workers=1))
    meta = r["meta"]
    assert set(meta["cities"]) == set("ABCD")
    assert [meta["cities"][c]["params"]["users"] for c in "ABCD"] == [400, 100, 80, 24]
    for c in "ABCD":
        assert (tmp_path / f"city{c}_challengedata.csv").is_file() and (tmp_path / f"POIdata_city{c}.csv").is_file()
    assert meta["generator_version"] and meta["cities"]["A"]["params"]["seed"] == 0


def test_gzip_holds_the_same_rows_and_is_deterministic(tmp_path, city):
    for name in ("g1", "g2"):
        generate(SynthSettings(out=tmp_path / name, users=USERS, days=DAYS, mask_users=0.05, gzip=True, workers=1))
    gz = (tmp_path / "g1" / "cityA_challengedata.csv.gz").read_bytes()
    assert gz == (tmp_path / "g2" / "cityA_challengedata.csv.gz").read_bytes()
    assert gzip.decompress(gz) == (city / "cityA_challengedata.csv").read_bytes()


def test_skip_up_to_date_refuse_different_force_rewrites(tmp_path):
    st = SynthSettings(out=tmp_path, users=100, days=7, workers=1)
    assert generate(st)["written"] == ["A"]
    assert generate(st)["skipped"] == ["A"]
    with pytest.raises(TrainingError, match="--force"):
        generate(SynthSettings(out=tmp_path, users=100, days=7, seed=5, workers=1))
    assert generate(SynthSettings(out=tmp_path, users=100, days=7, seed=5, force=True, workers=1))["written"] == ["A"]
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("kw, field", [({"cities": "AX"}, "cities"), ({"days": 0}, "days"),
                                       ({"mask_users": 1.5}, "mask_users"), ({"users": 0}, "users")])
def test_bad_settings_name_the_setting(tmp_path, kw, field):
    with pytest.raises(TrainingError, match=field):
        generate(SynthSettings(out=tmp_path, **kw))


def test_cli_generate_and_error(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "mobstream.cli", "generate", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    r = run("--out", str(tmp_path), "--users", "120", "--days", "7", "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert "city A: 120 users x 7 days" in r.stdout and (tmp_path / "synth_meta.json").is_file()
    r = run("--out", str(tmp_path), "--cities", "Q")
    assert r.returncode == 2 and "error:" in r.stderr and "cities" in r.stderr
