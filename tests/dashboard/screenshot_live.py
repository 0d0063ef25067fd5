"""Screenshots of the dashboard during a live replay, for docs/img (run by hand, not a test):

    .venv/bin/python -m tests.dashboard.screenshot_live CITY_CSV OUT_DIR [--speed 3600] [--after 45]
        [--labels LABELS_CSV] [--forecaster FLOW.pt] [--embedder ENCODER.pt]

Starts an embedded broker and redis-server, one worker, `mobstream replay` paced at --speed event
seconds per wall second, and `mobstream dashboard`; after --after seconds it saves the Flow map and
System tabs as PNGs. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from stream.services import create_topic, free_port, start_broker, start_redis, stop
from tests.dashboard import browser
from tests.integration.test_dashboard_e2e import _cli, _stop, _wait_http
from tests.integration.worker_proc import WorkerProc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("city_csv", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--speed", type=float, default=3600.0)
    ap.add_argument("--after", type=float, default=45.0)
    ap.add_argument("--labels", type=Path, default=None)
    ap.add_argument("--forecaster", type=Path, default=None, help="flow checkpoint for the worker")
    ap.add_argument("--embedder", type=Path, default=None, help="encoder checkpoint for the worker")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dashshot-"))
    services, procs, worker = [], [], None
    try:
        services = [start_broker(tmp), start_redis(tmp)]
        broker, redis_svc = services
        topic = f"pings-{uuid.uuid4().hex[:6]}"
        create_topic(broker.bootstrap, topic, 2)
        models = [*(["--forecaster", str(a.forecaster)] if a.forecaster else []),
                  *(["--embedder", str(a.embedder)] if a.embedder else [])]
        worker = WorkerProc(broker.bootstrap, redis_svc.url, topic, "live", 2, tmp / "worker.log", models)
        port = free_port()
        extra = ["--labels", str(a.labels)] if a.labels else []
        procs.append(_cli("dashboard", "--redis-url", redis_svc.url, "--app", "live", "--port", str(port),
                          "--refresh", "2", "--metrics-urls", f"http://127.0.0.1:{worker.metrics_port}/metrics",
                          *extra, log=tmp / "dash.log"))
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health", procs[0], tmp / "dash.log")
        procs.append(_cli("replay", str(a.city_csv), "--bootstrap", broker.bootstrap, "--pings-topic", topic,
                          "--partitions", "2", "--speed", str(a.speed), "--no-progress", log=tmp / "replay.log"))
        url = f"http://127.0.0.1:{port}/"
        # The System tab's charts need a history of rates: keep a second browser on it from the start.
        with browser.open_page(url + "?tab=System", size=(1400, 1100)) as system:
            system.wait("document.body.innerText.includes('Pings/s')", timeout=90)
            time.sleep(a.after)
            with browser.open_page(url, size=(1400, 1100)) as page:
                assert page.wait(browser.MAP_DRAWN, timeout=90), page.eval("document.body.innerText")
                time.sleep(2)
                page.wait(browser.SETTLED, timeout=20)
                page.screenshot(a.out / "dashboard_live_map.png")
                print(page.eval("document.body.innerText")[:400])
            system.wait(browser.SETTLED, timeout=20)
            system.screenshot(a.out / "dashboard_system.png")
            with browser.open_page(url + "?tab=Embeddings", size=(1400, 1000)) as users:
                if users.wait("document.body.innerText.includes('Color by')", timeout=60):
                    time.sleep(3)
                    users.wait(browser.SETTLED, timeout=20)
                    users.screenshot(a.out / "dashboard_embeddings.png")
    finally:
        for p in procs:
            _stop(p)
        if worker is not None:
            worker.stop()
        for s in services:
            stop(s)
    print(f"saved {a.out}/dashboard_live_map.png and dashboard_system.png; logs in {tmp}")


if __name__ == "__main__":
    main()
