"""Contract suite for the flow models and FlowForecaster: shapes, determinism, round trip, learning, features."""

import numpy as np
import pandas as pd
import pytest
import torch

from models import checkpoint
from models.exceptions import CheckpointError
from models.features import N_POI, FeatureStats, FeatureError, model_input, poi_features, poi_table, time_encoding
from models.flow_forecaster import FlowForecaster, build_model
from models.flow_linear import FlowLinear, FlowLinearConfig
from models.flow_lstm import FlowLSTM, FlowLSTMConfig

@pytest.fixture(autouse=True)
def one_thread():
    # Tiny batches: a second torch thread only spins against the other jobs on a 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FAMILIES = [("flow_lstm", FlowLSTM, FlowLSTMConfig), ("flow_linear", FlowLinear, FlowLinearConfig)]
LOSSES = ["poisson", "mse", "l1"]
STATS = FeatureStats((0.1, 0.05, 0.05), (0.3, 0.2, 0.2), (1.0, 1.0, 1.0), tuple(np.linspace(0, 1, N_POI)), tuple(np.linspace(1, 2, N_POI)))


def batch(n=64, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(1.0, (n, 8, 3)).astype(np.float32)
    counts[: n // 4] = 0  # repeated all-empty windows, as in a real grid
    poi = poi_features(rng.poisson(0.5, (n, N_POI)), STATS)
    seq, static = model_input(counts, 500, poi, STATS)
    target = torch.from_numpy(counts[:, -1:] + rng.poisson(0.5, (n, 4, 3)).astype(np.float32))  # (B, H, 3)
    return torch.from_numpy(seq), torch.from_numpy(static), target


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("kind,cls,cfg", FAMILIES)
def test_shapes_and_determinism(kind, cls, cfg, loss):
    seq, static, y = batch()
    torch.manual_seed(3)
    a = cls(cfg(loss=loss))
    torch.manual_seed(3)
    b = cls(cfg(loss=loss))
    pa, loss_value = a(seq, static, y)
    assert pa.shape == (64, 4, 3) and loss_value.ndim == 0
    assert torch.equal(pa, b(seq, static)[0]) and b(seq, static)[1] is None
    if loss == "poisson":
        assert (pa > 0).all()  # a log link: expected counts are never negative
    assert cls(cfg(horizons=1))(seq, static)[0].shape == (64, 1, 3)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="poisson loss forecasts counts"):
        FlowLSTM(FlowLSTMConfig(loss="poisson", target="change"))
    with pytest.raises(ValueError, match="must be one of"):
        FlowLinear(FlowLinearConfig(loss="l2"))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("kind,cls,cfg", FAMILIES)
def test_loss_falls_on_a_tiny_batch(kind, cls, cfg, loss):
    seq, static, y = batch(32)
    torch.manual_seed(0)
    m = cls(cfg(loss=loss))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = float(m(seq, static, y)[1].detach())
    for _ in range(60):
        _, loss = m(seq, static, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.7 * first


def test_distinct_windows_give_the_plain_lstm_result():
    seq, static, _ = batch(80)
    torch.manual_seed(0)
    m = FlowLSTM(FlowLSTMConfig()).eval()
    with torch.no_grad():
        plain = m.decode(m.encode(seq), seq, static)
        assert torch.allclose(m(seq, static)[0], plain, atol=1e-6)


def save_flow(path, kind, cls, cfg, poi_cells=(5,), poi_counts=None):
    torch.manual_seed(1)
    m = cls(cfg())
    poi_counts = np.ones((len(poi_cells), N_POI), np.float32) if poi_counts is None else poi_counts
    extra = {"feature_stats": STATS.to_dict(), "grid_size": 200, "poi_cells": torch.tensor(poi_cells), "poi_counts": torch.from_numpy(poi_counts), "data_fingerprint": "x"}
    checkpoint.save(path, kind, m.config, m, extra=extra)
    return m


@pytest.mark.parametrize("loss,target", [("poisson", "level"), ("mse", "change"), ("l1", "level")])
@pytest.mark.parametrize("kind,cls,cfg", FAMILIES)
def test_forecaster_round_trip(tmp_path, kind, cls, cfg, loss, target):
    path = tmp_path / f"{kind}.pt"
    m = save_flow(path, kind, cls, lambda: cfg(target=target, loss=loss)).eval()
    f = FlowForecaster.load(path)
    assert f.kind == kind and f.version.startswith(kind + "-")
    rng = np.random.default_rng(0)
    counts = rng.poisson(1.0, (10, 8, 3)).astype(np.float32)
    counts[[1, 4, 6]] = 0  # repeated windows share one window pass; their cells still differ
    counts[7] = counts[0]
    cells = np.array([5, 6, 7, 8, 9, 5, 39999, 0, 1, 2])
    got = f.predict(counts, 1000, cells)
    grid = np.zeros((40000, N_POI), np.float32)
    grid[5] = 1
    seq, static = model_input(counts, 1000, poi_features(grid[cells], STATS), STATS)
    with torch.no_grad():
        want = np.maximum(m(torch.from_numpy(seq), torch.from_numpy(static))[0].numpy() + (counts[:, None, -1] if target == "change" else 0), 0)
    assert got.shape == (10, 4, 3) and f.horizons == 4 and got.dtype == np.float32 and (got >= 0).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert build_model(kind, checkpoint.load(path, kind)["model_args"]).config == m.config


def test_single_horizon_checkpoint_still_loads(tmp_path):
    # Written before the multi-horizon head: model_args without `horizons`, one slot ahead, L1.
    path = tmp_path / "old.pt"
    m = save_flow(path, "flow_lstm", FlowLSTM, lambda: FlowLSTMConfig(horizons=1, loss="l1"))
    payload = torch.load(path, weights_only=True)
    del payload["model_args"]["horizons"]
    torch.save(payload, path)
    f = FlowForecaster.load(path)
    assert f.horizons == 1 and f.model.config == m.config
    assert f.predict(np.ones((3, 8, 3), np.float32), 100, np.array([1, 2, 3])).shape == (3, 1, 3)
    payload["model_args"]["horizons"] = 4  # weights of one horizon under a 4-horizon config: named, refused
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=f"{path}.*usable flow model"):
        FlowForecaster.load(path)


def test_forecaster_errors(tmp_path):
    path = tmp_path / "m.pt"
    save_flow(path, "flow_lstm", FlowLSTM, FlowLSTMConfig)
    f = FlowForecaster.load(path)
    with pytest.raises(CheckpointError, match=r"channels \(N, 8, 3\)"):
        f.predict(np.zeros((4, 7, 3)), 10, np.zeros(4, int))
    with pytest.raises(CheckpointError, match="cell ids"):
        f.predict(np.zeros((1, 8, 3)), 10, np.array([40000]))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        FlowForecaster.load(bad)
    other = tmp_path / "other.pt"
    checkpoint.save(other, "traj_encoder", {"n": 1}, torch.nn.Linear(1, 1))
    with pytest.raises(CheckpointError, match="expected flow_lstm or flow_linear"):
        FlowForecaster.load(other)
    broken = tmp_path / "broken.pt"
    checkpoint.save(broken, "flow_lstm", FlowLSTMConfig(), FlowLSTM(FlowLSTMConfig()), extra={})
    with pytest.raises(CheckpointError, match="usable flow model"):
        FlowForecaster.load(broken)


def test_time_encoding():
    # Slot 0 is Monday 00:00; slot 12 is 06:00 (a quarter of the day); slot 336 is Monday again.
    np.testing.assert_allclose(time_encoding(0), [0, 1, 0, 1], atol=1e-7)
    np.testing.assert_allclose(time_encoding(12)[:2], [1, 0], atol=1e-6)
    np.testing.assert_allclose(time_encoding(336), time_encoding(0), atol=1e-6)
    assert time_encoding(np.zeros((2, 8), int)).shape == (2, 8, 4)


def test_poi_table_and_model_input_match_pandas():
    poi = pd.DataFrame({"x": [1, 1, 3, 200], "y": [1, 1, 2, 200], "category": [1, 1, 85, 7], "POI_count": [2, 3, 4, 1]})
    table = poi_table(poi.x, poi.y, poi.category, poi.POI_count)
    ref = poi.assign(cell=(poi.y - 1) * 200 + poi.x - 1).pivot_table(index="cell", columns="category", values="POI_count", aggfunc="sum")
    for cell, row in ref.iterrows():
        for cat, v in row.dropna().items():
            assert table[cell, cat - 1] == v
    assert table.sum() == poi.POI_count.sum()
    counts = np.arange(2 * 8 * 3, dtype=np.float32).reshape(2, 8, 3)
    seq, static = model_input(counts, np.array([100, 101]), poi_features(table[[0, 1]], STATS), STATS)
    for i, end in enumerate((100, 101)):
        for k, slot in enumerate(range(end - 7, end + 1)):
            want = (np.log1p(counts[i, k]) - np.float32(STATS.chan_mean)) / np.float32(STATS.chan_std)
            np.testing.assert_array_equal(seq[i, k, :3], want.astype(np.float32))
            np.testing.assert_array_equal(seq[i, k, 3:], time_encoding(slot))
    with pytest.raises(FeatureError, match="expected"):
        model_input(counts[:, :7], 5, static, STATS)


def test_distinct_is_exact_even_when_hashes_collide(monkeypatch):
    import models.flow_lstm as fl

    rng = np.random.default_rng(1)
    rows = rng.poisson(0.3, (500, 24)).astype(np.float32)
    want_first, want_inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)[1:]
    for hashes in (fl._HASH, np.zeros_like(fl._HASH)):  # all-zero multipliers: every row collides
        monkeypatch.setattr(fl, "_HASH", hashes)
        first, inverse = fl.distinct(rows)
        assert np.array_equal(rows[first][inverse], rows) and len(first) == len(want_first)
        assert np.array_equal(np.sort(first), np.sort(want_first))
