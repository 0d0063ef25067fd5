"""The services state file (ports, pids, urls of `mobstream services up`) and endpoint discovery."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

from mobstream import paths
from mobstream.settings import env, opt
from stream.exceptions import ServiceError
from stream.services.process import Service, is_running

STATE_FILE = "services.json"
STATE_FORMAT = 1
# The project-wide setting names for external services; see docs/services.md.
BOOTSTRAP_SETTING = "bootstrap"
REDIS_URL_SETTING = "redis_url"
_FIELDS = {"name": str, "pid": int, "host": str, "port": int, "url": str, "log": str, "create_time": (int, float)}


class Endpoints(NamedTuple):
    """Where the broker and Redis are: (bootstrap "host:port", redis url, whether that Redis is a cluster node)."""

    bootstrap: str
    redis_url: str
    redis_cluster: bool = False


def services_dir(state_dir: Path | None = None) -> Path:
    """Logs, config and the state file of the embedded services: <state_dir>/services."""
    # Absolute, so the paths recorded in the state file still work from another working directory.
    return (Path(state_dir if state_dir is not None else paths.state_dir()) / "services").absolute()


def state_path(state_dir: Path | None = None) -> Path:
    return services_dir(state_dir) / STATE_FILE


def write_state(path: Path, services: dict[str, Service]) -> None:
    """Atomically write the state file, readable by the owner only (the redis url may hold a password)."""
    payload = {
        "format": STATE_FORMAT,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "services": {name: s.to_record() for name, s in services.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def parse_state(text: str, path: Path) -> dict[str, Service]:
    """The services recorded in a state file's text; ServiceError naming the file and field at fault."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ServiceError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}; "
                           "remove it or run `mobstream services down`") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("services"), dict):
        raise ServiceError(f"{path}: field 'services' missing or not an object")
    if payload.get("format") != STATE_FORMAT:
        raise ServiceError(f"{path}: field 'format' is {payload.get('format')!r}, expected {STATE_FORMAT}")
    services = {}
    for key, record in payload["services"].items():
        if not isinstance(record, dict):
            raise ServiceError(f"{path}: field 'services.{key}' is not an object")
        for field, kind in _FIELDS.items():
            value = record.get(field)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ServiceError(f"{path}: field 'services.{key}.{field}' missing or of the wrong type")
        services[key] = Service(record["name"], record["pid"], record["host"], record["port"], record["url"],
                                Path(record["log"]), float(record["create_time"]))
    return services


def read_state(path: Path) -> dict[str, Service] | None:
    """The services in the state file at path, or None when there is no file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ServiceError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_state(text, path)


def discover(state_dir: Path | None = None) -> Endpoints | None:
    """The endpoints of `mobstream services up`, or None when it is not up.

    A state file whose processes are gone raises ServiceError (run `mobstream services down`, then up).
    """
    path = state_path(state_dir)
    services = read_state(path)
    if services is None:
        return None
    for name in ("broker", "redis"):
        if name not in services:
            raise ServiceError(f"{path}: no '{name}' service recorded; run `mobstream services down` then `up`")
        if not is_running(services[name]):
            raise ServiceError(f"{path}: {name} pid {services[name].pid} is not running any more; "
                               "run `mobstream services down` then `mobstream services up`")
    from stream.services.redis_cluster import NODE_PREFIX

    return Endpoints(services["broker"].bootstrap, services["redis"].url, any(n.startswith(NODE_PREFIX) for n in services))


def resolve_endpoints(bootstrap: str | None, redis_url: str | None, state_dir: Path | None = None) -> Endpoints:
    """Explicit settings win (MOBSTREAM_BOOTSTRAP, MOBSTREAM_REDIS_URL); the rest comes from `services up`."""
    if bootstrap and redis_url:
        return Endpoints(bootstrap, redis_url)
    found = discover(state_dir)
    if found is None:
        missing = [env(n) for n, v in ((BOOTSTRAP_SETTING, bootstrap), (REDIS_URL_SETTING, redis_url)) if not v]
        raise ServiceError(f"no {' and no '.join(missing)} set and no embedded services at {state_path(state_dir)}; "
                           "run `mobstream services up` or set them")
    return Endpoints(bootstrap or found.bootstrap, redis_url or found.redis_url, not redis_url and found.redis_cluster)


def bootstrap_option() -> Any:
    """The project-wide --bootstrap option (MOBSTREAM_BOOTSTRAP), for commands to declare identically."""
    return opt(None, BOOTSTRAP_SETTING, "Kafka bootstrap servers host:port[,host:port]; "
               "default: the broker of `mobstream services up`.")


def redis_url_option() -> Any:
    """The project-wide --redis-url option (MOBSTREAM_REDIS_URL), for commands to declare identically."""
    return opt(None, REDIS_URL_SETTING, "Redis URL redis://[:password@]host:port/db; "
               "default: the redis of `mobstream services up`.")
