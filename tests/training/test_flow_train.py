"""Training and evaluation smoke test on a tiny city: checkpoints, metrics, report and figures appear."""

import json

import numpy as np
import pandas as pd
import pytest

from models.baselines import HistoricalAverage, persistence, seasonal_naive
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
    # Expected counts: Poisson FlowLSTM, least-squares linear; both see POIs and the cells' training levels.
    linear = FlowForecaster.load(s.out_dir / "flow_linear.pt")
    assert (f.model.config.loss, linear.model.config.loss) == ("poisson", "mse") and f.horizons == 4
    assert f.model.config.n_static == linear.model.config.n_static == 88 and f.poi_grid.shape == (40000, 88)
    r = evaluate(FlowEvalSettings(build, s.out_dir, plots=False))  # figures: test_figures (slow: matplotlib)
    check_report(json.loads((s.out_dir / "report.json").read_text()))
    assert (s.out_dir / "report.md").stat().st_size > 0
    # A model trained on other data must not be scored on this data's "held-out" period.
    other = tmp_path / "other.csv"
    random_dataset(8, users=30, days=9, span=3).to_csv(other, index=False)
    with pytest.raises(TrainingError, match="trained on"):
        evaluate(FlowEvalSettings(FlowBuildSettings(other, poi, cache_dir=tmp_path / "cache"), s.out_dir))


MODELS = {"flow_lstm", "flow_linear", "persistence", "seasonal_day", "seasonal_week", "historical_average"}


def check_report(r):
    """report.json: horizon -> channel -> model -> rmse, mae, poisson_deviance (+ bias), for all and the busiest cells."""
    assert r["horizons"] == [1, 2, 3, 4]
    for key in ("metrics", "busiest"):
        assert list(r[key]) == ["1", "2", "3", "4"]
        for h, channels in r[key].items():
            assert list(channels) == ["occupancy", "inflow", "outflow"]
            for models in channels.values():
                assert set(models) == MODELS
                for row in models.values():
                    assert {"rmse", "mae", "poisson_deviance", "bias_pct"} <= set(row)
                    assert all(np.isfinite(row[k]) and row[k] >= 0 for k in ("rmse", "mae", "poisson_deviance"))
    assert set(r["bias"]["4"]) == MODELS and "total_pct" in r["bias"]["1"]["flow_lstm"]
    assert sum(b["n"] for b in r["reliability"]["1"]) == r["scored_cells"] * r["split"]["test_slot_count"]
    assert set(r["targets"]["met"]) == {"h1_vs_naive", "h1_vs_linear", "last_h_vs_every_naive", "bias"}
    assert 0 < r["busiest_cells"] < r["scored_cells"] or r["scored_cells"] < 10


def test_scores_and_calibration():
    from models.flow_scores import poisson_deviance, scores
    from training.flow_report import calibration

    pred, actual = np.array([[1.0, 0.0], [2.0, 0.5]]), np.array([[1.0, 1.0], [0.0, 0.0]])
    s = scores(pred, actual)
    assert s["mae"] == 3.5 / 4 and np.isclose(s["rmse"], np.sqrt(5.25 / 4)) and s["bias_pct"] == 75.0
    assert poisson_deviance(np.array([1.0]), np.array([1.0]))[0] == 0  # a perfect forecast
    assert np.isclose(poisson_deviance(np.array([2.0]), np.array([0.0]))[0], 4.0)  # 2 * mu when nothing came
    assert np.isfinite(poisson_deviance(np.array([0.0]), np.array([3.0]))[0])  # floored, not infinite
    c = calibration(pred, actual)
    assert c["total_pct"] == 75.0 and c["per_slot_median_pct"] == -50.0  # slot 2 had no actual: left out per slot


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



@pytest.mark.slow
def test_figures(tmp_path):
    build, s, _ = tiny_city(tmp_path)
    train(s)
    r = evaluate(FlowEvalSettings(build, s.out_dir))
    assert [p.rsplit("/", 1)[1] for p in r["figures"]] == ["maps.png", "error_by_time_of_day.png", "reliability.png"]
    for name in ("maps.png", "error_by_time_of_day.png", "reliability.png"):
        assert (s.out_dir / name).stat().st_size > 1000
