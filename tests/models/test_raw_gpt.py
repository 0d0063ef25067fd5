"""The RAW GPT's contract: shapes, causality, determinism under a seed, save/load, loss falls, cell split."""

import pytest
import torch

from models import checkpoint
from models.exceptions import ModelsError
from models.raw_gpt import KIND, RawGPT, RawGPTConfig, join_cell, split_cell

CFG = RawGPTConfig(block_size=12, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(autouse=True)
def one_thread():
    # tiny tensors: a second OpenMP thread only adds spinning on a busy 2-core machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_batch(seed: int = 0, B: int = 3, T: int = 12):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, CFG.n_cells, (B, T), generator=g)
    times = torch.stack([torch.randint(0, 48, (B, T), generator=g), torch.randint(0, 7, (B, T), generator=g)], -1)
    query = torch.stack(
        [torch.randint(0, 48, (B, T), generator=g), torch.randint(0, 7, (B, T), generator=g), torch.randint(1, 200, (B, T), generator=g)], -1
    )
    target = idx.roll(-1, dims=1)
    target[:, -1] = -1
    return idx, times, query, target


def model(seed: int = 0) -> RawGPT:
    torch.manual_seed(seed)
    return RawGPT(CFG).eval()


def test_shapes_and_embedding():
    m = model()
    idx, times, query, target = make_batch()
    logits, loss = m(idx, times, query, target)
    assert logits.shape == (3, 12, CFG.n_blocks) and loss.ndim == 0 and torch.isfinite(loss)
    assert m(idx, times, query)[1] is None
    cells, lp = m.predict(idx, times, torch.tensor([0, 2]), torch.tensor([4, 11]), query[:2, 0], k=5)
    assert cells.shape == (2, 5) and lp.shape == (2, 5)
    assert bool((lp[:, :-1] >= lp[:, 1:]).all()) and bool((lp <= 0).all())
    assert m.embed(idx, times).shape == (3, CFG.n_embd)
    with pytest.raises(ModelsError, match="block_size"):
        m.encode(torch.zeros(1, 13, dtype=torch.long), torch.zeros(1, 13, 2, dtype=torch.long))


def test_causal_a_future_token_never_changes_earlier_outputs():
    m = model()
    idx, times, query, _ = make_batch()
    before = m(idx, times, query)[0]
    idx2, times2 = idx.clone(), times.clone()
    idx2[:, 7] = (idx2[:, 7] + 1234) % CFG.n_cells
    times2[:, 7, 0] = (times2[:, 7, 0] + 5) % 48
    after = m(idx2, times2, query)[0]
    assert torch.allclose(before[:, :7], after[:, :7], atol=1e-6)
    assert not torch.allclose(before[:, 7:], after[:, 7:])
    # the pointer obeys the same rule: a prediction from position 4 ignores tokens 5.. of its window
    rows, pos = torch.tensor([0]), torch.tensor([4])
    assert torch.equal(m.predict(idx, times, rows, pos, query[:1, 4])[0], m.predict(idx2, times2, rows, pos, query[:1, 4])[0])


def test_padding_after_a_user_changes_nothing_before_it():
    m = model()
    idx, times, query, _ = make_batch(B=1)
    padded = idx.clone()
    padded[:, 6:] = CFG.pad
    assert torch.allclose(m(idx, times, query)[0][:, :6], m(padded, times, query)[0][:, :6], atol=1e-6)
    # the embedding is the mean over real tokens only
    h = m.encode(padded, times)
    assert torch.allclose(m.embed(padded, times), h[:, :6].mean(1), atol=1e-6)


def test_deterministic_under_a_seed():
    idx, times, query, target = make_batch()
    a, b = model(7), model(7)
    assert torch.equal(a(idx, times, query, target)[1], b(idx, times, query, target)[1])
    assert not torch.equal(a(idx, times, query, target)[1], model(8)(idx, times, query, target)[1])


def test_save_load_round_trip(tmp_path):
    m = model()
    path = tmp_path / "raw.pt"
    checkpoint.save(path, KIND, CFG, m)
    payload = checkpoint.load(path, KIND)
    m2 = RawGPT(RawGPTConfig(**payload["model_args"])).eval()
    m2.load_state_dict(payload["state_dict"])
    idx, times, query, _ = make_batch()
    assert torch.equal(m(idx, times, query)[0], m2(idx, times, query)[0])


def test_loss_falls_on_a_tiny_batch():
    m = model().train()
    idx, times, query, target = make_batch(seed=3, B=4)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    first = None
    for _ in range(20):
        _, loss = m(idx, times, query, target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


def test_copy_is_learned_quickly():
    # "stay where you are": the target is the query's own last token; the pointer makes it easy
    m = model().train()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for step in range(60):
        idx, times, query, _ = make_batch(seed=100 + step, B=8)
        _, loss = m(idx, times, query, idx.clone())
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    idx, times, query, _ = make_batch(seed=999, B=8)
    cells, _ = m.predict(idx, times, torch.arange(8), torch.full((8,), 9), query[:, 9], k=1)
    assert (cells[:, 0] == idx[:, 9]).float().mean() >= 0.75


def test_cell_split_round_trip_and_config_checks():
    cells = torch.arange(CFG.n_cells)
    block, inner = split_cell(CFG, cells)
    assert int(block.max()) == CFG.n_blocks - 1 and int(inner.max()) == CFG.per_block - 1
    assert torch.equal(join_cell(CFG, block, inner), cells)
    with pytest.raises(ModelsError, match="coarse"):
        RawGPTConfig(coarse=7)
    with pytest.raises(ModelsError, match="n_head"):
        RawGPTConfig(n_embd=30, n_head=4)
