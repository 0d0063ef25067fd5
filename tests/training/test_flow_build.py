"""The flow builder gives exactly the numpy (and pandas) numbers; its cache and its errors."""

import os

import numpy as np
import pandas as pd
import pytest

from models.flows import densify
from tests.models.test_flows import as_frame, numpy_flows, pandas_flows, random_dataset
from training.exceptions import DataFormatError
from training.flow_build import FlowBuildSettings, load_or_build, query_flows, read_poi


@pytest.mark.parametrize("seed,suffix", [(0, ".csv"), (1, ".csv.gz"), (2, ".parquet"), (3, ".csv")])
def test_builder_equals_numpy_and_pandas(tmp_path, seed, suffix):
    df = random_dataset(seed, users=60, days=3)
    path = tmp_path / f"city{suffix}"
    df.to_parquet(path) if suffix == ".parquet" else df.to_csv(path, index=False)
    got = as_frame(query_flows(path))
    pd.testing.assert_frame_equal(got, as_frame(numpy_flows(df)), check_dtype=False)
    pd.testing.assert_frame_equal(got, pandas_flows(df), check_dtype=False)


def test_cache_builds_once_and_rebuilds_on_change(tmp_path):
    df = random_dataset(4, users=30, days=2)
    data = tmp_path / "cityB_challengedata.csv"
    df.to_csv(data, index=False)
    poi = tmp_path / "POIdata_cityB.csv"
    pd.DataFrame({"x": [1, 2], "y": [1, 1], "category": [1, 85], "POI_count": [3, 10]}).to_csv(poi, index=False)
    s = FlowBuildSettings(data=data, poi=poi, cache_dir=tmp_path / "cache")
    first = load_or_build(s)
    assert first.meta["city"] == "B" and first.poi.shape == (40000, 85) and first.poi[1, 84] == 10
    fc = numpy_flows(df)
    assert np.array_equal(first.counts, densify(fc, first.cells, first.slot0, first.counts.shape[0]))
    mtime = (s.cache_dir / "cityB_challengedata-B" / "counts.npy").stat().st_mtime_ns
    again = load_or_build(s)
    assert (s.cache_dir / "cityB_challengedata-B" / "counts.npy").stat().st_mtime_ns == mtime
    assert np.array_equal(again.counts, first.counts)
    df[df.uid < 10].to_csv(data, index=False)
    os.utime(data, ns=(1, 1))
    changed = load_or_build(s)
    assert changed.meta["fingerprint"] != first.meta["fingerprint"] and changed.counts.sum() < first.counts.sum()


def test_bad_rows_are_named(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"uid": [1, 1], "d": [0, 0], "t": [3, 50], "x": [1, 1], "y": [1, 1]}).to_csv(bad, index=False)
    with pytest.raises(DataFormatError, match=r"bad.csv: 1 rows .* uid,d,t,x,y = \(1, 0, 50, 1, 1\)"):
        query_flows(bad)
    dup = tmp_path / "dup.csv"
    pd.DataFrame({"uid": [1, 1], "d": [0, 0], "t": [3, 3], "x": [1, 2], "y": [1, 1]}).to_csv(dup, index=False)
    with pytest.raises(DataFormatError, match="repeat"):
        query_flows(dup)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(DataFormatError, match="wrong.csv"):
        query_flows(wrong)
    poi = tmp_path / "poi.csv"
    pd.DataFrame({"x": [1], "y": [1], "category": [86], "POI_count": [1]}).to_csv(poi, index=False)
    with pytest.raises(DataFormatError, match="poi.csv.*category=86"):
        read_poi(poi)


def test_unsorted_rows_and_chunk_edges_give_the_same_tensor(tmp_path):
    from training.flow_build import dense_flows, observations

    df = random_dataset(5, users=40, days=2)
    path = tmp_path / "shuffled.csv"
    df.sample(frac=1.0, random_state=0).to_csv(path, index=False)  # rows out of (uid, slot) order
    pd.testing.assert_frame_equal(as_frame(query_flows(path)), pandas_flows(df), check_dtype=False)
    obs = observations(path)
    whole, small = dense_flows(*obs), dense_flows(*obs, chunk=7)  # chunk edges split users
    assert np.array_equal(whole[0], small[0]) and np.array_equal(whole[1], small[1]) and whole[2] == small[2]
