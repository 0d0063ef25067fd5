"""What `services up|status|down` do with the state file: record, health-check, stop, clear stale entries."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from stream.exceptions import ServiceError
from stream.services import process
from stream.services.broker import metadata
from stream.services.embedded import EmbeddedServices
from stream.services.redis_cluster import NODE_PREFIX, cluster_state
from stream.services.redis_server import ping, redact
from stream.services.state import Endpoints, discover, read_state, state_path, write_state


def record(state_dir: Path, services: EmbeddedServices) -> Path:
    path = state_path(state_dir)
    write_state(path, services.services)
    return path


def already_up(state_dir: Path) -> Endpoints | None:
    """The recorded endpoints when both recorded processes still run; None otherwise."""
    with contextlib.suppress(ServiceError):
        return discover(state_dir)
    return None


def clear_stale(state_dir: Path, grace: float = 5.0) -> list[str]:
    """Stop whatever a half-dead recorded pair left running and remove its state file."""
    return stop_recorded(state_dir, grace, tolerate_corrupt=True)


def stop_recorded(state_dir: Path, grace: float = 5.0, *, tolerate_corrupt: bool = False) -> list[str]:
    """Stop every recorded service still running (only if it is the same process), then drop the file."""
    path = state_path(state_dir)
    try:
        services = read_state(path)
    except ServiceError:
        if not tolerate_corrupt:
            raise
        services = {}
    stopped = []
    names = sorted(services or {}, key=lambda n: n == "broker")  # Redis nodes first, the broker last
    for name in names:
        service = (services or {}).get(name)
        if service is not None and process.is_running(service):
            process.stop(service, grace)
            stopped.append(f"{name} (pid {service.pid})")
    path.unlink(missing_ok=True)
    return stopped


def _probe(service: process.Service, timeout: float, cluster: bool = False) -> str:
    """'' when healthy, else why not."""
    if not process.is_running(service):
        return f"pid {service.pid} is not running"
    if not process.listens_on(service.pid, service.port):
        return f"pid {service.pid} does not listen on port {service.port}"
    try:
        if service.name == "broker":
            metadata(service.bootstrap, timeout)
        else:
            ping(service.url, timeout)
            if cluster:
                state = cluster_state(service.url, timeout)
                if state != "ok":
                    return f"cluster_state:{state}"
    except Exception as exc:  # the reason goes into the report, whatever the client raised
        return f"health check failed: {exc!r}"
    return ""


def check_all(state_dir: Path, timeout: float) -> dict[str, Any]:
    """Status of every recorded service; 'healthy' only when the file exists and all pass."""
    path = state_path(state_dir)
    services = read_state(path) or {}
    cluster = any(n.startswith(NODE_PREFIX) for n in services)
    rows = {}
    for name, service in services.items():
        problem = _probe(service, timeout, cluster)
        rows[name] = {
            "healthy": not problem,
            "detail": problem or ("metadata ok" if name == "broker" else "PONG, cluster_state:ok" if cluster else "PONG"),
            "pid": service.pid,
            "port": service.port,
            "url": redact(service.url),
            "log": str(service.log),
        }
    healthy = bool(rows) and all(r["healthy"] for r in rows.values())
    return {"state_file": str(path), "healthy": healthy, "services": rows}
