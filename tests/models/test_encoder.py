"""Contract suite of the trajectory encoder and its inference wrapper: shapes, masks, determinism, round trip, loss."""

import numpy as np
import pytest
import torch

from models import checkpoint
from models.embedder import EmbedderError, TrajectoryEmbedder
from models.encoder import KIND, EncoderConfig, TrajectoryEncoder
from models.windows import model_input

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


def test_embed_users_averages_tiles():
    m = model()
    emb = TrajectoryEmbedder(m, "v")
    uid = np.array([5, 5, 9])
    uids, e = emb.embed_users(uid, np.array([1, 20, 3]), np.array([3, 4, 5]), np.array([3, 4, 5]))
    assert uids.tolist() == [5, 9] and e.shape == (2, 32)
    one = emb.embed(np.array([[3] + [0] * 7]), np.array([[3] + [0] * 7]), np.array([[False, True] + [False] * 6]), 7)
    assert not np.allclose(e[0], one[0])


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
