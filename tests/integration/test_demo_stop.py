"""`mobstream demo` stopped by Ctrl-C (SIGINT to its process group, as a terminal sends it) or SIGTERM:
replay, worker, dashboard, services stop in that order within 10 s, with clean logs, and no process is left."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from stream.services import free_port

pytestmark = pytest.mark.integration
STOP_LIMIT = 10.0
DIRTY = re.compile(r"Traceback|Task was destroyed|Connection refused|ConnectionRefused|KafkaConnectionError|Unclosed")


def run_demo(tmp: Path, args: list[str], ready: str, after: float, sig: int, timeout: float = 240.0):
    """Start the demo in its own session, wait for `ready` in its output plus `after` s, send `sig` to its
    group; returns (seconds to stop, its output, every process it had started)."""
    env = dict(os.environ, MOBSTREAM_DATA_DIR=str(tmp / "data"), MOBSTREAM_RUNS_DIR=str(tmp / "runs"),
               MOBSTREAM_STATE_DIR=str(tmp / "state"), MOBSTREAM_METRICS_PORT=str(free_port()),
               MOBSTREAM_DASHBOARD_PORT=str(free_port()))
    out = tmp / "demo.out"
    argv = [sys.executable, "-m", "mobstream.cli", "demo", "--users", "300", "--days", "2", "--no-train", *args]
    with open(out, "wb") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    seen: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + timeout
        while ready not in out.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        end = time.monotonic() + after
        while time.monotonic() < end:  # every process of the tree, the short-lived ones too
            seen.update({c.pid: c for c in psutil.Process(proc.pid).children(recursive=True)})
            time.sleep(0.1)
        t0 = time.monotonic()
        os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
        proc.wait(60)
        took = time.monotonic() - t0
    finally:
        for p in [*seen.values(), psutil.Process(proc.pid) if proc.poll() is None else None]:
            if p is not None and p.is_running():
                p.kill()
    return took, out.read_text(errors="replace"), seen


def alive(procs) -> list[str]:
    time.sleep(0.5)  # a SIGTERMed orphan takes a moment to exit
    return [f"{p.pid} {p.name()}" for p in procs.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def check_logs(tmp: Path, out: str, order: list[str]) -> None:
    for log in [tmp / "demo.out", *sorted((tmp / "state").rglob("*.log"))]:
        assert not DIRTY.search(log.read_text(errors="replace")), f"{log}:\n{log.read_text(errors='replace')[-3000:]}"
    stopped = [line.split(":")[0].split()[-1] for line in out.splitlines() if line.endswith(": stopped")]
    assert stopped == order, out[-2000:]
    assert "embedded services stopped" in out


def test_ctrl_c_during_the_replay_stops_everything_in_order(tmp_path):
    took, out, procs = run_demo(tmp_path, ["--speed", "1800"], "[demo] replay: replay", 6.0, signal.SIGINT)
    print(f"demo stop after Ctrl-C: {took:.2f} s")
    assert took <= STOP_LIMIT, out[-2000:]
    assert not alive(procs) and len(procs) >= 5  # broker, redis, worker, dashboard (+ streamlit), replay
    check_logs(tmp_path, out, ["replay", "worker", "dashboard"])


def test_sigterm_after_the_replay_stops_everything_in_order(tmp_path):
    """With both models loaded (tiny checkpoints where the demo looks for them), so outputs flush at stop."""
    from tests.stream.tiny_models import encoder_checkpoint, flow_checkpoint

    (tmp_path / "runs" / "flow").mkdir(parents=True)
    (tmp_path / "runs" / "encoder").mkdir(parents=True)
    flow_checkpoint(tmp_path / "runs" / "flow" / "flow_lstm.pt")
    encoder_checkpoint(tmp_path / "runs" / "encoder" / "encoder.pt")
    took, out, procs = run_demo(tmp_path, ["--speed", "0"], "Ctrl-C stops everything", 3.0, signal.SIGTERM)
    print(f"demo stop after SIGTERM: {took:.2f} s")
    assert took <= STOP_LIMIT, out[-2000:]
    assert not alive(procs)
    assert "flow_lstm.pt" in (tmp_path / "state" / "demo" / "worker.log").read_text()  # models loaded
    check_logs(tmp_path, out, ["worker", "dashboard"])
