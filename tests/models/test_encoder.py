"""Contract suite of the trajectory encoder and its inference wrapper: shapes, masks, determinism, round trip, loss."""

import dataclasses

import numpy as np
import pytest
import torch

from models import checkpoint
from models.embedder import EmbedderError, TrajectoryEmbedder
from models.encoder import KIND, EncoderConfig, TrajectoryEncoder, stays
from models.grid import cell_id
from models.profiles import SUMMARY, profile_windows, profiles
from models.windows import BUCKETS, model_input, time_bucket

torch.set_num_threads(1)  # tiny tensors: threads only add contention on a shared 2-core machine
CFG = EncoderConfig(d_model=32, n_head=2, n_layer=1, lstm_hidden=16, dropout=0.0)


def windows(n=16, seed=0, p=0.5):
    rng = np.random.default_rng(seed)
    mask = rng.random((n, 8)) < p
    mask[:, -1] = True
    return rng.integers(1, 201, (n, 8)), rng.integers(1, 201, (n, 8)), mask


def tensor(x, y, mask, end=100):
    return torch.from_numpy(model_input(x, y, mask, end))


def model(seed=0, cfg=CFG):
    torch.manual_seed(seed)
    return TrajectoryEncoder(cfg).eval().requires_grad_(False)


def test_shapes_and_default_dim():
    m = model()
    x = tensor(*windows())
    assert m.embed(x).shape == (16, 32)
    pred, loss = m(x)
    assert pred.shape == (16, 8, 2, 200) and loss is None
    assert EncoderConfig().dim == 512


def test_changing_a_masked_slot_cell_changes_nothing():
    m = model()
    x, y, mask = windows()
    a = m.embed(tensor(x, y, mask))
    x2, y2 = x.copy(), y.copy()
    x2[~mask], y2[~mask] = 7, 199
    raw = tensor(x, y, mask)
    raw[..., 0] = torch.where(raw[..., 4] > 0, raw[..., 0], 123)  # even a raw input's hidden cells are ignored
    assert torch.equal(a, m.embed(tensor(x2, y2, mask)))
    assert torch.allclose(a, m.embed(raw), atol=1e-6)


def test_observed_slots_matter_and_all_masked_is_finite_zero():
    m = model()
    x, y, mask = windows()
    x2 = x.copy()
    x2[:, -1] = (x2[:, -1] % 200) + 1
    assert not torch.allclose(m.embed(tensor(x, y, mask)), m.embed(tensor(x2, y, mask)))
    empty = m.embed(tensor(x, y, np.zeros_like(mask)))
    assert torch.isfinite(empty).all() and torch.count_nonzero(empty) == 0
    m.train()
    _, loss = m(tensor(x, y, np.zeros_like(mask)), torch.zeros(16, 8, 2, dtype=torch.long))
    assert torch.isfinite(loss)


def test_determinism_under_a_seed():
    x = tensor(*windows())
    assert torch.equal(model(3).embed(x), model(3).embed(x))
    assert not torch.equal(model(3).embed(x), model(4).embed(x))


def test_save_load_round_trip_through_the_embedder(tmp_path):
    m = model()
    path = tmp_path / "enc.pt"
    version = checkpoint.save(path, KIND, CFG, m)
    emb = TrajectoryEmbedder.load(path, batch_size=5)
    assert emb.version == version and emb.kind == KIND and emb.dim == 32
    x, y, mask = windows()
    got = emb.embed(x, y, mask, 100)
    assert got.dtype == np.float32 and got.shape == (16, 32)
    assert np.allclose(got, m.embed(tensor(x, y, mask)).detach().numpy(), atol=1e-5)
    with pytest.raises(EmbedderError, match=r"shape \(N, 8\)"):
        emb.embed(x[:, :4], y, mask, 100)
    with pytest.raises(EmbedderError, match="bool mask"):
        emb.embed(x, y, mask.astype(int), 100)


def test_embed_users_pools_the_profile_windows():
    m = model()
    emb = TrajectoryEmbedder(m, "v")
    uid, slot, xy = np.array([5, 5, 9]), np.array([1, 20, 3]), np.array([3, 4, 5])
    uids, e = emb.embed_users(uid, slot, xy, xy, time_aware=False)
    assert uids.tolist() == [5, 9] and e.shape == (2, 32)
    w = profile_windows(uid, slot, xy, xy)  # user 5: slot 1 in 4 windows, slot 20 in 4 others
    assert (w.uid == 5).sum() == 8 and (w.uid == 9).sum() == 4
    assert np.allclose(e, profiles(w.uid, w.end_slot, emb.embed_windows(w), time_aware=False)[1], atol=1e-6)
    _, t = emb.embed_users(uid, slot, xy, xy)
    assert t.shape == (2, BUCKETS * 32 + SUMMARY)
    one = emb.embed(np.array([[0, 3] + [0] * 6]), np.array([[0, 3] + [0] * 6]), np.array([[False, True] + [False] * 6]), 7)
    # Day 0 (Monday): slot 1 lies in windows ending at 1, 3, 5, 7 (bucket 0), slot 20 in 21, 23 (bucket 2), 25, 27 (3).
    buckets = t[0, : BUCKETS * 32].reshape(BUCKETS, 32)
    assert not buckets[[1, 4, 5, 6, 7, 8, 9, 10, 11]].any() and buckets[[0, 2, 3]].any(axis=1).all()
    assert np.allclose(emb.embed_windows(w)[np.flatnonzero((w.uid == 5) & (w.end_slot == 7))], one, atol=1e-6)


def test_profiles_time_buckets_weekends_apart():
    assert time_bucket(np.array([7, 15, 47, 5 * 48 + 7, 6 * 48 + 47, 7 * 48])).tolist() == [0, 1, 5, 6, 11, 0]
    uids, p = profiles(np.array([1, 1, 1, 2]), np.array([7, 7, 15, 5 * 48 + 7]), np.array([[1.0], [3.0], [8.0], [5.0]], np.float32))
    assert uids.tolist() == [1, 2] and p.shape == (2, BUCKETS + SUMMARY)
    assert p[0, 0] == 2.0 and p[0, 1] == 8.0 and p[1, 6] == 5.0 and p[:, :BUCKETS].sum() == 15.0
    g = p[0, BUCKETS : BUCKETS + 102]  # every window ends at phase 7: the first block of the summary
    away, spread, between = g[:BUCKETS], g[BUCKETS : 2 * BUCKETS], g[2 * BUCKETS : 2 * BUCKETS + 66]
    assert np.allclose(away[:2], [2.0, 4.0]) and np.allclose(spread[:2], [1.0, 0.0]) and np.isclose(between[0], 6.0)
    assert np.allclose(g[-BUCKETS:][:2], np.log1p([2, 1]))


def test_stays_merge_consecutive_observations_of_one_cell():
    # slots: A A - B - A A A: stays A (2 obs, slots 0-1), B (1), A (3 obs, slots 5-7)
    x = np.array([[1, 1, 0, 2, 0, 1, 1, 1]])
    mask = x > 0
    cx, cy, tod, dow, length, count, n = stays(tensor(x, x, mask, end=47))
    assert n.tolist() == [3] and cx[0, :3].tolist() == [1, 2, 1] and cx[0, 3:].tolist() == [0] * 5
    assert length[0, :3].tolist() == [2, 1, 3] and count[0, :3].tolist() == [2, 1, 3] and tod[0, :3].tolist() == [40, 43, 45]


def test_bilstm_is_torch_lstm():
    m = model()
    h = torch.randn(6, 3, CFG.d_model)
    want, _ = m.lstm(h)
    assert torch.allclose(m.bilstm(h), want, atol=1e-5)


def test_poi_vectors_enter_the_embedding():
    m = model()
    x, y, mask = windows()
    before = m.embed(tensor(x, y, mask))
    poi = torch.zeros(200 * 200, CFG.n_poi)
    poi[cell_id(int(x[0, -1]), int(y[0, -1])), 3] = 2.0
    m.set_poi(poi)
    after = m.embed(tensor(x, y, mask))
    assert not torch.allclose(before[0], after[0]) and torch.allclose(before[1:], after[1:])


def test_a_format_1_checkpoint_is_refused_clearly(tmp_path):
    m = model()
    checkpoint.save(tmp_path / "old.pt", KIND, {k: v for k, v in dataclasses.asdict(CFG).items() if k != "format"}, m)
    with pytest.raises(EmbedderError, match="format 1.*retrain"):
        TrajectoryEmbedder.load(tmp_path / "old.pt")


def test_loss_falls_on_a_tiny_batch():
    torch.manual_seed(0)
    m = TrajectoryEncoder(CFG)
    x = tensor(*windows(16))
    target = torch.from_numpy(np.stack(windows(16, seed=1)[:2], -1))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        _, loss = m(x, target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first
