"""End to end: replay a small city through a real worker (real broker, real Redis), serve `mobstream
dashboard`, open it in headless Chromium and check that the live map is drawn; the screenshot is kept
in runs/screenshots/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from models.slots import slot_from_dt
from stream.services import free_port
from tests.dashboard import browser, fill
from tests.integration.worker_proc import WorkerProc, wait_assembled

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.skipif(browser.chromium() is None, reason="needs chromium")]
SHOTS = Path(__file__).resolve().parents[2] / "runs" / "screenshots"


def _cli(*args: str, log: Path) -> subprocess.Popen:
    out = open(log, "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "mobstream.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        out.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dashboard exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"dashboard did not answer {url} in {timeout} s:\n{log.read_text()[-3000:]}")


def test_live_map_renders_in_chromium(broker, redis_url, make_topic, tmp_path):
    topic = make_topic(partitions=2)
    df = fill.city_frame(n_users=600, days=1)
    df.to_csv(tmp_path / "cityA.csv", index=False)
    app = f"e2e{uuid.uuid4().hex[:8]}"
    worker = WorkerProc(broker.bootstrap, redis_url, topic, app, 2, tmp_path / "worker.log")
    procs = []
    try:
        replay = _cli("replay", str(tmp_path / "cityA.csv"), "--bootstrap", broker.bootstrap, "--pings-topic", topic,
                      "--partitions", "2", "--no-progress", log=tmp_path / "replay.log")
        procs.append(replay)
        assert replay.wait(120) == 0, (tmp_path / "replay.log").read_text()[-3000:]
        wait_assembled(redis_url, app, int(slot_from_dt(df.d.max(), 47)), worker)
        port = free_port()
        dash = _cli("dashboard", "--redis-url", redis_url, "--app", app, "--port", str(port), "--refresh", "2",
                    "--metrics-urls", f"http://127.0.0.1:{worker.metrics_port}/metrics", log=tmp_path / "dash.log")
        procs.append(dash)
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health", dash, tmp_path / "dash.log")
        shot = SHOTS / "dashboard_e2e.png"
        with browser.open_page(f"http://127.0.0.1:{port}/") as page:
            assert page.wait(browser.MAP_DRAWN, timeout=90), page.eval("document.body.innerText")
            page.wait(browser.SETTLED, timeout=20)
            text = page.eval("document.body.innerText")
            box = browser.image_box(page)
            page.screenshot(shot)
        assert "Last closed slot" in text and "47" in text and "Traceback" not in text, text
        assert box[2] - box[0] > 300 and box[3] - box[1] > 300, box
        # About 1% of the grid is active: the drawn map must show that many coloured pixels.
        assert browser.colourful_fraction(shot, box) > 0.003, shot
    finally:
        for p in procs:
            _stop(p)
        worker.stop()
