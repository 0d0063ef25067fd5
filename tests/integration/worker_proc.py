"""Start and stop `mobstream worker` processes for integration tests (by pid, always cleaned up)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis

from stream.services import free_port
from stream.keys import Keys
from stream.redis_client import sync_client


def _die_with_parent() -> None:
    """SIGKILL the worker when the test or bench process dies, however it dies (Linux prctl)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class WorkerProc:
    def __init__(self, bootstrap: str, redis_url: str, topic: str, app: str, partitions: int, log: Path,
                 extra: list[str] | None = None, retain_slots: int = 100_000, cluster: bool = False) -> None:
        """retain_slots: by default every slot's outputs are kept, so that tests compare whole replays with the
        offline truth (the worker's own default keeps 96); `extra` flags come last and win."""
        self.log = log
        self.metrics_port = free_port()
        argv = [sys.executable, "-m", "mobstream.cli", "worker", "--bootstrap", bootstrap, "--redis-url", redis_url,
                "--pings-topic", topic, "--dlq-topic", f"{topic}-dlq", "--forecasts-topic", f"{topic}-fc",
                "--embeddings-topic", f"{topic}-emb", "--flows-topic", f"{topic}-flows", "--app", app, "--partitions", str(partitions),
                "--web-port", str(free_port()), "--metrics-port", str(self.metrics_port),
                "--session-timeout", "6", "--batch-wait", "0.02", "--retain-slots", str(retain_slots), *(["--redis-cluster"] if cluster else []), *(extra or [])]
        env = dict(os.environ, MOBSTREAM_STATE_DIR=str(log.parent / "state"))
        self.out = open(log, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                     preexec_fn=_die_with_parent)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.out.close()

    def metrics(self, timeout: float = 5.0) -> str:
        """The worker's Prometheus exposition text (raises OSError while its endpoint is not up)."""
        return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=timeout).read().decode()

    def tail(self, n: int = 3000) -> str:
        return self.log.read_bytes()[-n:].decode(errors="replace")


def unless_busy(call, default=None):
    """call(), or `default` while Redis answers BUSY (a worker's Lua script holds it): ask again later."""
    try:
        return call()
    except redis.ResponseError as exc:
        if not str(exc).startswith("BUSY"):
            raise
        return default


def wait_assembled(redis_url: str, app: str, slot: int, proc: WorkerProc | list, timeout: float = 90.0,
                   cluster: bool = False) -> None:
    """Wait until every partition has closed `slot` and its flows are assembled."""
    r = sync_client(redis_url, cluster, socket_timeout=60)  # a loaded Redis can take longer than redis-py's 5 s
    procs = proc if isinstance(proc, list) else [proc]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            got = unless_busy(lambda: r.get(Keys(app).assembled("A")))
            if got is not None and int(got) >= slot:
                return
            for p in procs:
                if p.proc.poll() is not None:
                    raise AssertionError(f"worker exited {p.proc.returncode}:\n{p.tail()}")
            time.sleep(0.2)
        raise AssertionError(f"slot {slot} not assembled after {timeout} s (assembled={got}):\n{procs[0].tail()}")
    finally:
        r.close()
