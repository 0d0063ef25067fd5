"""Sequences, training batches, the Markov baseline on hand-made sequences, and the evaluation end to end."""

import json

import numpy as np
import pytest

from models.grid import cell_id
from models.raw_gpt import RawGPTConfig
from training.exceptions import DataFormatError, TrainingError
from training.nextloc_baselines import fit_markov, markov_chain, pairs_at
from training.nextloc_data import from_arrays, load, sample_batch, split_users, split_validation, windows
from training.nextloc_eval import NextlocEvalSettings, evaluate_nextloc
from training.nextloc_train import RawTrainSettings, train_raw

A, B, C = cell_id(1, 1), cell_id(2, 1), cell_id(5, 5)


def seqs_of(rows):
    uid, d, t, x, y = np.array(rows).T
    return from_arrays(uid, d, t, x, y)


def test_sequences_sort_drop_masked_and_keep_last_per_slot():
    s = seqs_of([(7, 0, 3, 2, 1), (7, 0, 1, 1, 1), (3, 1, 0, 5, 5), (7, 0, 2, 999, 999), (3, 1, 0, 1, 1)])
    assert s.uids.tolist() == [3, 7] and s.offsets.tolist() == [0, 1, 3]
    assert s.slot.tolist() == [48, 1, 3] and s.cell.tolist() == [A, A, B]
    train, test = split_users(s, 5)
    assert train.uids.tolist() == [3] and test.uids.tolist() == [7] and test.cell.tolist() == [A, B]


def test_load_names_the_file_line_and_field(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("uid,d,t,x,y\n0,0,0,1,1\n0,0,1,999,999\n0,0,48,1,1\n")
    with pytest.raises(DataFormatError, match=r"c.csv:4: field t"):
        load(p)
    with pytest.raises(DataFormatError, match="no such file"):
        load(tmp_path / "missing.csv")


def test_windows_pad_past_the_user_and_target_later_rows():
    s = seqs_of([(0, 0, t, 1 + t, 1) for t in range(5)] + [(1, 0, 0, 9, 9)])
    b = windows(s, np.array([2]), 4, np.array([[1, 2, 1, 1]]), pad=RawGPTConfig().pad)
    assert b.idx.tolist() == [[cell_id(3, 1), cell_id(4, 1), cell_id(5, 1), RawGPTConfig().pad]]
    assert b.target.tolist() == [[cell_id(4, 1), -1, -1, -1]]  # never a row of the next user
    assert b.query[0, 0].tolist() == [3, 0, 1]  # slot of day, weekday, gap
    rng = np.random.default_rng(0)
    sb = sample_batch(s, rng, 5, 4, 3, RawGPTConfig().pad)
    assert sb.idx.shape == (5, 4) and (sb.query[..., 2][sb.target >= 0] >= 1).all()
    fit, val = split_validation(seqs_of([(u, 0, 0, 1, 1) for u in range(10)]), 0.2, seed=1)
    assert fit.n_users == 8 and val.n_users == 2 and not set(fit.uids) & set(val.uids)


def test_markov_on_a_hand_made_sequence():
    # A -> B -> B -> A -> B at consecutive slots; C never a source; user 1 has a gap so no 1-step pair
    s = seqs_of([(0, 0, t, x, y) for t, (x, y) in enumerate([(1, 1), (2, 1), (2, 1), (1, 1), (2, 1)])] + [(1, 0, 0, 5, 5), (1, 0, 5, 1, 1)])
    i, j = pairs_at(s, 1)
    assert i.tolist() == [0, 1, 2, 3]
    m = fit_markov(s, horizons=2, k=3)
    # 1-step: A -> B twice; B -> B once, B -> A once (tie: smaller cell id first, A < B)
    assert m.rank(1, np.array([A]), 3).tolist() == [[B, A, -1]]  # persistence appended
    assert m.rank(1, np.array([B]), 3).tolist() == [[A, B, -1]]
    assert m.rank(1, np.array([C]), 3).tolist() == [[C, -1, -1]]  # unseen source -> persistence
    # 2-step pairs: A->B, B->A, B->B
    assert m.rank(2, np.array([A]), 2).tolist() == [[B, A]]
    chain = markov_chain(m, np.array([A, C]), np.array([0, 0]), np.array([[1, 2, 4], [3, -1, -1]]))
    assert chain.tolist() == [[B, A, B], [C, -1, -1]]


def write_city(path, users=40, days=6, seed=0):
    """A tiny city: each user alternates home and work on a daily rhythm, seen in ~60% of slots."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        home, work = rng.integers(1, 40, 2), rng.integers(60, 100, 2)
        for d in range(days):
            for t in range(48):
                if rng.random() < 0.6:
                    x, y = work if 16 <= t < 36 and d % 7 < 5 else home
                    rows.append((u, d, t, x, y))
    np.savetxt(path, np.array(rows), fmt="%d", delimiter=",", header="uid,d,t,x,y", comments="")


def test_train_then_evaluate_end_to_end(tmp_path):
    data = tmp_path / "city.csv"
    write_city(data)
    cfg = RawGPTConfig(block_size=16, n_layer=1, n_head=2, n_embd=16)
    settings = RawTrainSettings(
        data=data, out=tmp_path / "raw.pt", epochs=2, steps_per_epoch=3, batch_size=4, train_uid_below=30,
        model=cfg, progress=False, device="cpu",
    )
    summary = train_raw(settings)
    assert summary["version"].startswith("raw_gpt-") and len(summary["history"]) == 2
    report = evaluate_nextloc(NextlocEvalSettings(
        data=data, checkpoint=tmp_path / "raw.pt", out_dir=tmp_path / "rep", train_uid_below=30, eval_days=2, device="cpu",
    ))
    on_disk = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert on_disk["test_users"] == 10 and (tmp_path / "rep" / "report.md").read_text().startswith("# Next-location")
    models = {(r["model"], r["h"]) for r in report["next_location"]}
    assert models == {(m, h) for m in ("persistence", "markov", "raw_gpt") for h in range(1, 6)}
    for r in report["next_location"]:
        assert 0 <= r["acc@1"] <= r["acc@5"] <= 1 and r["n"] > 0
    persist = {r["model"]: r for r in report["trajectory"]}["persistence"]
    assert 0 < persist["geobleu"] <= 1 and persist["dtw_km"] >= 0
    with pytest.raises(TrainingError, match="train_uid_below"):
        evaluate_nextloc(NextlocEvalSettings(data=data, train_uid_below=0), with_gpt=False)
