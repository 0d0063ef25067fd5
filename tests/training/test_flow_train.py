"""Training and evaluation smoke test on a tiny city: checkpoints, metrics, report and figures appear."""

import json

import numpy as np
import pandas as pd
import pytest

from models.baselines import HistoricalAverage, WindowMedian, persistence, seasonal_naive
from models.flow_forecaster import FlowForecaster
from tests.models.test_flows import random_dataset
from training.exceptions import TrainingError
from training.flow_build import FlowBuildSettings
from training.flow_eval import FlowEvalSettings, evaluate
from training.flow_train import FlowTrainSettings, Split, train


def tiny_city(tmp_path):
    data = tmp_path / "cityA_challengedata.csv"
    random_dataset(7, users=30, days=9, span=3).to_csv(data, index=False)
    poi = tmp_path / "POIdata_cityA.csv"
    pd.DataFrame({"x": [1, 2, 3], "y": [1, 2, 3], "category": [1, 2, 3], "POI_count": [5, 1, 2]}).to_csv(poi, index=False)
    build = FlowBuildSettings(data, poi, cache_dir=tmp_path / "cache")
    s = FlowTrainSettings(build, out_dir=tmp_path / "flow", epochs=2, patience=1, samples_per_epoch=2048, val_samples=1024, batch=512, threads=1)
    return build, s, poi


def test_train_then_evaluate_tiny_city(tmp_path):
    build, s, poi = tiny_city(tmp_path)
    m = train(s)
    assert set(m["models"]) == {"flow_lstm", "flow_linear"} and m["scored_cells"] == 9
    assert json.loads((s.out_dir / "train_metrics.json").read_text())["split"] == m["split"]
    f = FlowForecaster.load(s.out_dir / "flow_lstm.pt")
    assert f.extra["data_fingerprint"] == m["data"]["fingerprint"] and f.extra["split"] == m["split"]
    r = evaluate(FlowEvalSettings(build, s.out_dir, plots=False))  # figures: test_figures (slow: matplotlib)
    assert set(r["metrics"]) == {"flow_lstm", "flow_linear", "persistence", "seasonal_day", "seasonal_week", "historical_average", "window_median"}
    assert all(np.isfinite(v["occupancy"]["mae"]) for v in r["metrics"].values())
    for name in ("report.md", "report.json"):
        assert (s.out_dir / name).stat().st_size > 0
    # A model trained on other data must not be scored on this data's "held-out" period.
    other = tmp_path / "other.csv"
    random_dataset(8, users=30, days=9, span=3).to_csv(other, index=False)
    with pytest.raises(TrainingError, match="trained on"):
        evaluate(FlowEvalSettings(FlowBuildSettings(other, poi, cache_dir=tmp_path / "cache"), s.out_dir))


def test_split_is_temporal_and_checked():
    sp = Split.make(1000, 0.2, 0.15)
    assert (sp.val_start, sp.test_start, sp.n_slots) == (680, 800, 1000)
    with pytest.raises(TrainingError, match="too few"):
        Split.make(12, 0.2, 0.15)


def test_baselines():
    counts = np.arange(400 * 2 * 3).reshape(400, 2, 3) % 7
    t = np.array([340, 399])
    assert np.array_equal(persistence(counts, t), counts[t - 1])
    assert np.array_equal(seasonal_naive(counts, t, 336), counts[t - 336])
    ha = HistoricalAverage.fit(counts[:336 * 1 + 10], slot0=0)
    np.testing.assert_allclose(ha.predict(np.array([5]), 0)[0], (counts[5] + counts[341]) / 2)
    np.testing.assert_allclose(ha.predict(np.array([100]), 0)[0], counts[100])
    with pytest.raises(ValueError):
        seasonal_naive(counts, np.array([10]), 48)



def test_window_median_is_the_median_per_pattern():
    counts = np.zeros((40, 2, 3), dtype=np.uint16)
    counts[8::2, 0, 0] = 1  # cell 0 alternates 0/1: after ...,1 comes 0, after ...,0 comes 1
    counts[30:, 1, 0] = 2  # cell 1: empty, then 2 from slot 30 on
    wm = WindowMedian.fit(counts, np.arange(8, 40))
    got = wm.predict(counts, np.array([20, 21, 39]))
    assert got[:, 0, 0].tolist() == [1, 0, 0] and got[2, 1, 0] == 2  # after 8 slots of 2 came 2 both times
    assert got.shape == (3, 2, 3)


@pytest.mark.slow
def test_figures(tmp_path):
    build, s, _ = tiny_city(tmp_path)
    train(s)
    r = evaluate(FlowEvalSettings(build, s.out_dir))
    assert [p.rsplit("/", 1)[1] for p in r["figures"]] == ["maps.png", "error_by_time_of_day.png"]
    for name in ("maps.png", "error_by_time_of_day.png"):
        assert (s.out_dir / name).stat().st_size > 1000
