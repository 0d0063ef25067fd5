"""`mobstream demo`: the whole loop on the embedded default, started in order and stopped cleanly.

services (embedded broker + redis-server, unless MOBSTREAM_BOOTSTRAP/MOBSTREAM_REDIS_URL or
`mobstream services up` say where they are) -> synthetic city (if missing) -> models (trained if no
checkpoint) -> worker -> dashboard -> replay. Every step is the same `mobstream` subcommand a user
would run by hand; the demo only orders them, prints where to look, and stops them on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from mobstream import paths
from mobstream.errors import MobstreamError
from mobstream.settings import opt

LOG = "[demo]"


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    users: int
    days: int
    speed: float
    replay_days: int | None
    train: bool
    dashboard: bool
    dashboard_port: int
    metrics_port: int
    exit_after_replay: bool
    regenerate: bool
    data_dir: Path
    runs_dir: Path
    state_dir: Path

    @property
    def dataset(self) -> Path:
        return self.data_dir / "synth" / "cityA_challengedata.csv"

    @property
    def forecaster(self) -> Path:
        return self.runs_dir / "flow" / "flow_lstm.pt"

    @property
    def embedder(self) -> Path:
        return self.runs_dir / "encoder" / "encoder.pt"


def say(msg: str) -> None:
    typer.secho(f"{LOG} {msg}", fg=typer.colors.CYAN, err=True)


def mobstream_argv(*args: str) -> list[str]:
    """The same CLI a user runs, in this interpreter (works without the venv on PATH)."""
    return [sys.executable, "-m", "mobstream.cli", *args]


# The demo's stop signals: Ctrl-C (SIGINT), `kill`/`docker stop` (SIGTERM), a closed terminal (SIGHUP).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STEP_GRACE = 3.0  # seconds a foreground step (the replay) has to exit on SIGINT before it is killed
WORKER_GRACE = 6.0  # a worker stops in 1.3-1.8 s (docs/reliability.md); the whole demo must be down in 10 s
DASHBOARD_GRACE = 2.0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_step(name: str, argv: list[str], env: dict[str, str]) -> None:
    """Run a foreground step; its output goes to the terminal. A failure stops the demo; so does a stop
    signal, after the step has had STEP_GRACE seconds to exit on the SIGINT it is sent."""
    say(f"{name}: {' '.join(argv[3:])}")
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env)
    try:
        code = proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)  # Ctrl-C in a terminal reached it already; a SIGTERM did not
        try:
            proc.wait(STEP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        say(f"{name}: stopped")
        raise
    if code != 0:
        raise MobstreamError(f"demo step '{name}' failed with exit code {code}")
    say(f"{name}: done in {time.perf_counter() - t0:.1f} s")


class Children:
    """Background children (worker, dashboard) with logs; stopped in start order (the worker before the
    dashboard that shows it), each with its whole process group, never orphaned."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.items: list = []

    def start(self, name: str, argv: list[str], env: dict[str, str], grace: float):
        from stream.services import process

        log = self.log_dir / f"{name}.log"
        popen = process.spawn(name, argv, log, owned=True, env=env)
        svc = process.Service(name, popen.pid, process.LOOPBACK, 0, "", log, time.time(), popen)
        self.items.append((svc, grace))
        say(f"{name}: started (pid {popen.pid}, log {log})")
        return svc

    def check(self) -> None:
        for svc, _ in self.items:
            code = svc.popen.poll()
            if code is not None:
                from stream.services.process import log_tail

                raise MobstreamError(f"{svc.name} exited with code {code}; log {svc.log}:\n{log_tail(svc.log)}")

    def stop(self) -> None:
        from stream.services import process

        while self.items:
            svc, grace = self.items.pop(0)
            try:
                process.stop(svc, grace=grace)
                say(f"{svc.name}: stopped")
            except Exception as exc:  # keep stopping the others
                say(f"{svc.name}: stop failed: {exc}")


def _services(settings: DemoSettings):
    """Endpoints to use, and the EmbeddedServices we started (None when they were already there)."""
    from stream.services import EmbeddedServices, ServicesConfig, discover
    from stream.services.state import Endpoints

    boot, rurl = os.environ.get("MOBSTREAM_BOOTSTRAP"), os.environ.get("MOBSTREAM_REDIS_URL")
    if boot and rurl:
        say(f"using external services: Kafka {boot}, Redis from MOBSTREAM_REDIS_URL")
        return Endpoints(boot, rurl), None
    found = discover(settings.state_dir)
    if found is not None:
        say(f"using the services of `mobstream services up`: Kafka {found.bootstrap}")
        return found, None
    svc = EmbeddedServices(ServicesConfig(settings.state_dir)).start()
    say(f"started embedded services: Kafka {svc.endpoints.bootstrap}, Redis {svc.endpoints.redis_url} "
        f"(logs in {svc.log_dir})")
    return svc.endpoints, svc


def _wait_for_close(redis_url: str, app: str, last_slot: int, children: Children, timeout: float = 300.0) -> None:
    """Wait until the worker has assembled the replay's last slot (the demo's end when --exit-after-replay)."""
    import redis

    from stream.keys import Keys

    r = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    key = Keys(app).latest("A")
    while time.monotonic() < deadline:
        children.check()
        got = r.get(key)
        if got is not None and int(got) >= last_slot:
            say(f"worker closed slot {int(got)}: the replay is fully processed")
            return
        time.sleep(0.5)
    raise MobstreamError(f"the worker did not close slot {last_slot} within {timeout:.0f} s")


def run(s: DemoSettings) -> None:
    from models.slots import SLOTS_PER_DAY

    for sig in STOP_SIGNALS[1:]:
        signal.signal(sig, _interrupt)
    endpoints, services = _services(s)
    env = dict(os.environ, MOBSTREAM_BOOTSTRAP=endpoints.bootstrap, MOBSTREAM_REDIS_URL=endpoints.redis_url,
               MOBSTREAM_DATA_DIR=str(s.data_dir), MOBSTREAM_RUNS_DIR=str(s.runs_dir),
               MOBSTREAM_STATE_DIR=str(s.state_dir), PYTHONUNBUFFERED="1")
    children = Children(s.state_dir / "demo")
    try:
        gen = ["generate", "--users", str(s.users), "--days", str(s.days)] + (["--force"] if s.regenerate else [])
        try:
            run_step("generate", mobstream_argv(*gen), env)
        except MobstreamError as exc:
            raise MobstreamError(f"{exc}; if {s.dataset.parent} holds a city from other settings or an older "
                                 f"generator, rerun with --regenerate (MOBSTREAM_DEMO_REGENERATE=1) or point "
                                 f"MOBSTREAM_DATA_DIR elsewhere") from exc
        if s.train and not s.forecaster.exists():
            run_step("train flow", mobstream_argv("train", "flow", "--data", str(s.dataset), "--out-dir", str(s.forecaster.parent)), env)
        if s.train and not s.embedder.exists():
            run_step("train encoder", mobstream_argv("train", "encoder", "--data", str(s.dataset), "--out", str(s.embedder)), env)
        from stream.services import free_port

        worker_args = ["worker", "--metrics-port", str(s.metrics_port), "--web-port", str(free_port())]
        if s.forecaster.exists():
            worker_args += ["--forecaster", str(s.forecaster)]
        if s.embedder.exists():
            worker_args += ["--embedder", str(s.embedder)]
        # Broker, Redis, worker and dashboard share this host's cores: one inference thread (unless set).
        worker_env = {**env, "MOBSTREAM_TORCH_THREADS": os.environ.get("MOBSTREAM_TORCH_THREADS", "1")}
        children.start("worker", mobstream_argv(*worker_args), worker_env, WORKER_GRACE)
        metrics_url = f"http://127.0.0.1:{s.metrics_port}/metrics"
        if s.dashboard:
            env_dash = dict(env, MOBSTREAM_METRICS_URLS=metrics_url)
            children.start("dashboard", mobstream_argv("dashboard", "--port", str(s.dashboard_port)), env_dash,
                           DASHBOARD_GRACE)
        say(f"Kafka bootstrap   {endpoints.bootstrap}   (topics pings, pings-dlq, flow-forecasts, user-embeddings)")
        say(f"Redis             {endpoints.redis_url}")
        say(f"worker metrics    {metrics_url}")
        if s.dashboard:
            say(f"live dashboard    http://127.0.0.1:{s.dashboard_port}")
        replay_args = ["replay", str(s.dataset), "--speed", str(s.speed)]
        days = s.days if s.replay_days is None else min(s.replay_days, s.days)
        if s.replay_days is not None:
            replay_args += ["--first-day", "0", "--last-day", str(days - 1)]
        run_step("replay", mobstream_argv(*replay_args), env)
        children.check()
        if s.exit_after_replay:
            _wait_for_close(endpoints.redis_url, "mobstream", days * SLOTS_PER_DAY - 1, children)
            return
        say("replay finished; the worker and dashboard keep running. Ctrl-C stops everything.")
        while True:
            children.check()
            time.sleep(1.0)
    finally:
        # In order: the replay (run_step stopped it), the worker while the broker and Redis are still up
        # (its producer flushes), the dashboard, the services. Further signals must not cut this short.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        t0 = time.perf_counter()
        children.stop()
        if services is not None:
            services.stop()
            say("embedded services stopped")
        say(f"stopped in {time.perf_counter() - t0:.1f} s")


def demo(
    users: int = opt(6000, "demo_users", "Users in the synthetic city A generated when missing."),
    days: int = opt(28, "demo_days", "Days in the synthetic city."),
    speed: float = opt(1800.0, "demo_speed", "Replay pace in event seconds per wall second (1800: a 30-min slot a second; 0: as fast as possible)."),
    replay_days: int = opt(None, "demo_replay_days", "Replay only the first N days (default: all)."),
    train: bool = opt(True, "demo_train", "Train the models when no checkpoint exists (else the worker runs without them)."),
    dashboard: bool = opt(True, "demo_dashboard", "Start the Streamlit dashboard."),
    dashboard_port: int = opt(8501, "dashboard_port", "Dashboard port."),
    metrics_port: int = opt(9108, "metrics_port", "Worker Prometheus port."),
    exit_after_replay: bool = opt(False, "demo_exit_after_replay", "Stop once the worker has closed the replay's last slot (for scripted runs)."),
    regenerate: bool = opt(False, "demo_regenerate", "Rewrite the synthetic city even if one exists (e.g. from an older generator)."),
) -> None:
    """Run the whole loop on the embedded default: services, synthetic city, models, worker, dashboard, replay."""
    run(DemoSettings(users=users, days=days, speed=speed, replay_days=replay_days, train=train, dashboard=dashboard,
                     dashboard_port=dashboard_port, metrics_port=metrics_port, exit_after_replay=exit_after_replay,
                     regenerate=regenerate, data_dir=paths.data_dir().resolve(), runs_dir=paths.runs_dir().resolve(),
                     state_dir=paths.state_dir().resolve()))
