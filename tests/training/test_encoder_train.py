"""Train, evaluate and embed end to end on the tiny city (two short epochs; marked slow), and the CLI's error paths."""

import json

import pandas as pd
import pytest
import torch

from mobstream.cli import app, _register
from models.embedder import TrajectoryEmbedder
from training.embed import EmbedSettings, run_embed
from training.encoder_eval import EncoderEvalSettings, evaluate
from training.encoder_train import EncoderTrainSettings, train_encoder
from training.exceptions import TrainingError
from tests.training.test_encoder_data import toy_city


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("city")
    data = toy_city(folder)
    st = EncoderTrainSettings(data=data, out=folder / "enc.pt", epochs=2, per_user=6, batch_size=64, train_uid_below=40, progress=False)
    return data, st, train_encoder(st)


@pytest.mark.slow  # trains a model: minutes on a busy 2-core machine
def test_training_writes_a_loadable_checkpoint(trained):
    data, st, summary = trained
    assert summary["epochs"] >= 1 and summary["device"] == "cpu"
    emb = TrajectoryEmbedder.load(st.out)
    assert emb.dim == 512 and emb.version == summary["version"]


@pytest.mark.slow  # trains a model: minutes on a busy 2-core machine
def test_evaluate_writes_reports_on_test_users_only(trained, tmp_path):
    data, st, _ = trained
    r = evaluate(EncoderEvalSettings(checkpoint=st.out, data=data, out=tmp_path, min_visitors=1))
    assert r["train_uid_below"] == 40 and r["profiling"]["users"] == 20
    probes = r["profiling"]["probes"]
    assert {"encoder (trained)", "random embeddings", "hand-crafted mobility features"} <= set(probes)
    assert json.loads((tmp_path / "report.json").read_text())["version"] == r["version"]
    assert "Commuter identification" in (tmp_path / "report.md").read_text()


@pytest.mark.slow  # trains a model: minutes on a busy 2-core machine
def test_embed_job_outputs(trained, tmp_path):
    data, st, _ = trained
    r = run_embed(EmbedSettings(checkpoint=st.out, data=data, out=tmp_path, train_uid_below=40, users=(41, 42)))
    df = pd.read_parquet(tmp_path / "embeddings.parquet")
    assert len(df) == 20 and df["uid"].min() >= 40 and "commuter" in df.columns and "e511" in df.columns
    for f in r["files"]:
        assert (tmp_path / f).stat().st_size > 0
    with pytest.raises(TrainingError, match="not test users"):
        run_embed(EmbedSettings(checkpoint=st.out, data=data, out=tmp_path, train_uid_below=40, users=(3,)))


def test_cli_errors_are_clean(tmp_path):
    from typer.testing import CliRunner

    _register()
    res = CliRunner().invoke(app, ["train", "encoder", "--objective", "nope", "--data", str(tmp_path / "x.csv")])
    assert isinstance(res.exception, TrainingError) and "objective='nope'" in str(res.exception)
    res = CliRunner().invoke(app, ["train", "encoder", "--data", str(tmp_path / "missing.csv")])
    assert "missing.csv: no such file" in str(res.exception)
