"""The `mobstream dashboard` command: flags -> DashboardSettings -> `streamlit run dashboard/app.py`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import typer

from mobstream.settings import opt
from models.slots import DEFAULT_ORIGIN
from stream.services.state import redis_url_option

APP = Path(__file__).with_name("app.py")


def streamlit_argv(port: int, address: str) -> list[str]:
    """`streamlit run` with a headless server, no telemetry, no file watcher, the dark theme."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
            "--server.address", address, "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--server.runOnSave", "false", "--theme.base", "dark",
            "--client.toolbarMode", "minimal"]


def dashboard(
    redis_url: str = redis_url_option(),
    app: str = opt("mobstream", "app", "App id of the workers to show (their Redis key prefix)."),
    redis_cluster: bool = opt(False, "redis_cluster", "MOBSTREAM_REDIS_URL names a node of a Redis Cluster "
                              "(set by itself for `services up --redis-shards N`)."),
    refresh: float = opt(3.0, "refresh", "Seconds between panel refreshes."),
    port: int = opt(8501, "port", "HTTP port of the dashboard."),
    address: str = opt("127.0.0.1", "address", "Address to listen on (0.0.0.0 to serve other hosts)."),
    metrics_urls: str = opt(None, "metrics_urls", "Workers' Prometheus endpoints, comma-separated, "
                            "e.g. http://127.0.0.1:9108/metrics."),
    grid_origin_lat: float = opt(None, "grid_origin_lat", "Latitude of the grid's south-west corner: "
                                 "when set (with the longitude), the map can be drawn over its real place."),
    grid_origin_lon: float = opt(None, "grid_origin_lon", "Longitude of the grid's south-west corner."),
    labels: Path = opt(None, "labels", "A labels CSV (the synthetic city's labels_cityX.csv) to color users by."),
    pca: Path = opt(None, "pca", "A PCA saved by `mobstream embed` (pca.joblib): the explorer's axes; "
                    "default: fitted on the first embeddings seen, then kept."),
    history_slots: int = opt(48, "history_slots", "Slots of history in the cell drill-down and error charts."),
    max_users: int = opt(5000, "max_users", "Most user embeddings the explorer reads (lowest uids first)."),
    origin: int = opt(DEFAULT_ORIGIN, "origin", "Epoch seconds of slot 0 (for wall-clock labels)."),
) -> None:
    """Serve the live dashboard (flow map, cell drill-down, embeddings, system health); reads Redis only."""
    from dashboard.settings import DashboardSettings, split_urls

    s = DashboardSettings(redis_url=redis_url, app=app, redis_cluster=redis_cluster, refresh=refresh, port=port,
                          metrics_urls=split_urls(metrics_urls), grid_origin_lat=grid_origin_lat,
                          grid_origin_lon=grid_origin_lon, labels=labels, pca=pca, history_slots=history_slots,
                          max_users=max_users, origin=origin)
    # The app gets its settings from s.to_env(); of the caller's MOBSTREAM_* variables only the paths
    # and the Redis credentials/TLS files (read by dashboard.data through stream.security) go along.
    keep = ("MOBSTREAM_REDIS_USERNAME", "MOBSTREAM_REDIS_PASSWORD", "MOBSTREAM_REDIS_SSL_")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MOBSTREAM_") or k.endswith("_DIR") or k.startswith(keep)}
    env.update(s.to_env())
    typer.echo(f"dashboard on http://{address}:{port}  (Ctrl-C stops it)", err=True)
    proc = subprocess.Popen(streamlit_argv(port, address), env=env)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())  # a SIGTERM to this process alone stops streamlit too
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(10)
    if proc.returncode not in (0, -2, -15, None):
        raise typer.Exit(proc.returncode)
