"""Corrupt inputs at the CLI: truncated or wrong-kind checkpoints, corrupt and masked-only datasets, an empty
topic. Each gives a clear error naming the file (exit 2) or a clean no-op, never a traceback."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.worker_proc import WorkerProc
from tests.stream.tiny_city import write_city


def mobstream(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mobstream.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, MOBSTREAM_STATE_DIR="/nonexistent-state"))


def clean_error(p: subprocess.CompletedProcess, names: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr + p.stdout, p.stderr[-3000:]
    assert re.search(r"^error: .*" + re.escape(names), p.stderr, re.M), p.stderr[-2000:]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    import torch

    from models import checkpoint

    d = tmp_path_factory.mktemp("corrupt")
    write_city(d / "cityA.csv", n_users=40, days=3)
    wrong = d / "wrong" / "flow_lstm.pt"
    wrong.parent.mkdir()
    checkpoint.save(wrong, "raw_gpt", {"n": 2}, torch.nn.Linear(2, 2))
    (d / "wrong" / "flow_linear.pt").write_bytes(wrong.read_bytes())
    (d / "trunc").mkdir()
    for name in ("flow_lstm.pt", "flow_linear.pt"):
        (d / "trunc" / name).write_bytes(wrong.read_bytes()[:300])
    (d / "corrupt.csv").write_bytes(b"uid,d,t,x,y\n1,0,0,3,4\n2,0,1,5,\x00\xff garbage\n")
    (d / "trunc.csv.gz").write_bytes(gzip.compress((d / "cityA.csv").read_bytes())[:80])
    (d / "masked.csv").write_text("uid,d,t,x,y\n1,0,0,999,999\n2,0,1,999,999\n3,1,5,999,999\n")
    (d / "empty.csv").write_text("")
    return {p.name: p for p in d.rglob("*") if p.is_file()} | {"dir": d}


@pytest.mark.parametrize("kind", ["trunc", "wrong"])
def test_evaluate_flow_with_a_bad_checkpoint(files, kind, tmp_path):
    d = files["dir"]
    p = mobstream("evaluate", "flow", "--data", d / "cityA.csv", "--poi", "none", "--cache-dir", tmp_path,
                  "--model-dir", d / kind,
                  "--no-plots")
    clean_error(p, str(d / kind / "flow_"))


@pytest.mark.parametrize("name", ["corrupt.csv", "trunc.csv.gz", "masked.csv", "empty.csv"])
def test_train_flow_with_a_bad_dataset(files, name, tmp_path):
    p = mobstream("train", "flow", "--data", files[name], "--poi", "none", "--out-dir", tmp_path / "o",
                  "--cache-dir", tmp_path / "c")
    clean_error(p, str(files[name]))


def test_data_report_on_bad_datasets(files):
    p = mobstream("data-report", files["trunc.csv.gz"])
    clean_error(p, str(files["trunc.csv.gz"]))
    p = mobstream("data-report", "--strict", files["corrupt.csv"])
    clean_error(p, str(files["corrupt.csv"]))
    for name in ("corrupt.csv", "masked.csv"):  # lenient (the default): a report that counts the bad rows
        p = mobstream("data-report", files[name])
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]


@pytest.mark.parametrize("name", ["trunc.csv.gz", "empty.csv", "corrupt.csv"])
def test_replay_of_a_bad_dataset(files, name, broker, make_topic):
    p = mobstream("replay", files[name], "--bootstrap", broker.bootstrap, "--pings-topic", make_topic(partitions=2),
                  "--partitions", "2", "--no-progress")
    clean_error(p, str(files[name]))


def test_replay_of_a_masked_only_dataset_is_a_no_op(files, broker, make_topic):
    p = mobstream("replay", files["masked.csv"], "--bootstrap", broker.bootstrap, "--pings-topic",
                  make_topic(partitions=2), "--partitions", "2", "--no-progress")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert "replayed 0 pings" in p.stdout and "3 masked rows skipped" in p.stdout, p.stdout


def test_replay_to_an_unreachable_broker(files):
    from stream.services import free_port

    p = mobstream("replay", files["cityA.csv"], "--bootstrap", f"127.0.0.1:{free_port()}", "--no-progress")
    clean_error(p, "bootstrap")


def metrics_text(w: WorkerProc) -> str:
    try:
        return w.metrics(timeout=2)
    except OSError:
        return ""


def test_worker_on_an_empty_topic_idles_cleanly(broker, redis_url, make_topic, tmp_path):
    w = WorkerProc(broker.bootstrap, redis_url, make_topic(partitions=2), f"t{uuid.uuid4().hex[:8]}", 2,
                   tmp_path / "w.log")
    try:
        time.sleep(6)  # started, joined the group, polled an empty topic for a while
        alive = w.proc.poll() is None
        text = metrics_text(w)
    finally:
        w.stop()
    log = w.tail(200_000)
    assert alive and "mobstream_messages_total 0.0" in text, log[-3000:]
    assert "Traceback" not in log and w.proc.returncode in (0, -15), log[-3000:]


@pytest.mark.parametrize("setting,kind", [("forecaster", "trunc"), ("embedder", "wrong")])
def test_worker_with_a_bad_checkpoint_stops_at_start(files, setting, kind):
    """A checkpoint that is there but does not load is an error at start naming the file and the setting
    (exit 2, no traceback), before any service is contacted (the endpoints here are closed ports)."""
    path = files["dir"] / kind / "flow_lstm.pt"
    t0 = time.monotonic()
    p = mobstream("worker", "--bootstrap", "127.0.0.1:1", "--redis-url", "redis://127.0.0.1:1/0", f"--{setting}", path,
                  timeout=60)
    clean_error(p, f"setting {setting} (MOBSTREAM_{setting.upper()}): cannot load {path}")
    assert time.monotonic() - t0 < 30


def test_worker_with_a_checkpoint_broken_while_running_keeps_going(files, broker, redis_url, make_topic, tmp_path):
    """A checkpoint that breaks after start (a bad retrain) turns its output off (log naming the file + gauge 0);
    windows and flows go on; a good one written later is loaded without a restart (gauge 1)."""
    import asyncio
    import shutil

    import orjson

    from models.slots import DEFAULT_ORIGIN as O, SLOT_SECONDS as S
    from tests.integration.test_worker_deadletters import produce
    from tests.integration.worker_proc import wait_assembled

    d = files["dir"]
    topic, app = make_topic(partitions=1), f"t{uuid.uuid4().hex[:8]}"
    msgs = [orjson.dumps({"uid": u, "ts": O + s * S + 9, "x": 3 + s, "y": 4}) for s in range(3) for u in range(3)]
    asyncio.run(produce(broker.bootstrap, topic, [(m, 0) for m in msgs + [orjson.dumps({"watermark": O + 3 * S})]]))
    fc, emb = tmp_path / "flow.pt", tmp_path / "enc.pt"  # absent at start: watched, off until they appear
    w = WorkerProc(broker.bootstrap, redis_url, topic, app, 1, tmp_path / "w.log",
                   ["--forecaster", fc, "--embedder", emb])
    try:
        deadline = time.monotonic() + 60
        while not metrics_text(w) and time.monotonic() < deadline:  # started (past the start check)
            time.sleep(0.2)
        shutil.copy(d / "trunc" / "flow_lstm.pt", fc)
        shutil.copy(d / "wrong" / "flow_lstm.pt", emb)
        wait_assembled(redis_url, app, 2, w)
        deadline = time.monotonic() + 30  # the files are looked at every model_poll (5 s) seconds
        while not (f"cannot load {fc}" in w.tail(200_000) and f"cannot load {emb}" in w.tail(200_000)) \
                and time.monotonic() < deadline:
            time.sleep(0.3)
        text = metrics_text(w)
        alive = w.proc.poll() is None
        # A good retrain then lands: loaded without a restart (in the worker's background thread).
        from tests.stream.tiny_models import encoder_checkpoint, flow_checkpoint

        flow_checkpoint(fc)
        encoder_checkpoint(emb)
        loaded = ('mobstream_model_loaded{model="forecaster"} 1.0', 'mobstream_model_loaded{model="embedder"} 1.0')
        deadline = time.monotonic() + 30
        while not all(s in metrics_text(w) for s in loaded) and time.monotonic() < deadline:
            time.sleep(0.3)
        after = metrics_text(w)
    finally:
        w.stop()
    log = w.tail(200_000)
    assert alive, log[-3000:]
    assert 'mobstream_model_loaded{model="forecaster"} 0.0' in text and 'mobstream_model_loaded{model="embedder"} 0.0' in text
    assert "Traceback" not in log, log[-3000:]
    assert f"cannot load {fc}" in log and f"cannot load {emb}" in log, log[-3000:]
    assert all(s in after for s in loaded), log[-3000:]
    assert f"forecaster: loaded {fc}" in log and f"embedder: loaded {emb}" in log
