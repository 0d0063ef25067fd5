"""Child-process plumbing for the embedded services: the Service handle, spawn, health wait, stop."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from stream.exceptions import ServiceError

LOOPBACK = "127.0.0.1"
LOG_TAIL_CHARS = 2000
_PR_SET_PDEATHSIG = 1


@dataclasses.dataclass(frozen=True)
class Service:
    """A running service: what clients need (url, bootstrap) and what stop() needs (pid, create_time)."""

    name: str
    pid: int
    host: str
    port: int
    url: str
    log: Path
    create_time: float
    # Only set in the process that spawned it; a Service read back from the state file has none.
    popen: subprocess.Popen | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def bootstrap(self) -> str:
        """host:port, the form Kafka clients take as bootstrap servers."""
        return f"{self.host}:{self.port}"

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "host": self.host,
            "port": self.port,
            "url": self.url,
            "log": str(self.log),
            "create_time": self.create_time,
        }


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on right now (the kernel's pick); callers retry if they lose the race."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """True when something listens on host:port (TIME_WAIT leftovers do not count, as for the servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when the spawning thread dies (crash, SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        # The parent may have died between fork and prctl; then no signal would ever come.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def spawn(name: str, argv: list[str], log: Path, *, owned: bool, env: dict[str, str] | None = None,
          binary_setting: str = "") -> subprocess.Popen:
    """Start argv in its own process group with stdout/stderr appended to log.

    owned=True ties the child to the calling thread's life (PR_SET_PDEATHSIG), so call it from a
    thread that outlives the service (normally the main thread). `services up` passes owned=False.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        out.write(f"=== mobstream: starting {name} at {stamp}: {' '.join(argv[:1])} ===\n".encode())
        out.flush()
        try:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, close_fds=True,
                preexec_fn=_die_with_parent(os.getpid()) if owned else None,
            )
        except OSError as exc:
            hint = f" (setting {binary_setting})" if binary_setting else ""
            raise ServiceError(f"cannot run the {name} binary {argv[0]!r}: {exc.strerror or exc}{hint}") from exc


def log_tail(log: Path, offset: int = 0, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of a log from offset on, for error messages."""
    try:
        with open(log, "rb") as f:
            f.seek(max(offset, os.path.getsize(log) - chars))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def log_size(log: Path) -> int:
    try:
        return os.path.getsize(log)
    except OSError:
        return 0


def wait_healthy(name: str, popen: subprocess.Popen, check: Callable[[], None], timeout: float, log: Path,
                 log_offset: int, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> float:
    """Poll check() (raises while not ready) until it passes; seconds taken. ServiceError on exit or timeout."""
    start = clock()
    delay = 0.005
    last: BaseException | None = None
    while True:
        code = popen.poll()
        if code is not None:
            raise ServiceError(f"{name} exited with code {code} while starting; log {log}:\n"
                               f"{log_tail(log, log_offset)}")
        try:
            check()
            return clock() - start
        except Exception as exc:  # any failure of the probe means "not ready yet"
            last = exc
        if clock() - start >= timeout:
            raise ServiceError(f"{name} not healthy after {timeout:g} s (setting MOBSTREAM_SERVICES_TIMEOUT); "
                               f"last probe error: {last!r}; log {log}:\n{log_tail(log, log_offset)}")
        sleep(delay)
        delay = min(delay * 2, 0.2)


def listens_on(pid: int, port: int) -> bool:
    """True when process pid itself holds a listening socket on port (not some other process)."""
    import psutil

    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


def require_listening(service_name: str, pid: int, port: int) -> None:
    if not listens_on(pid, port):
        raise ServiceError(f"{service_name} pid {pid} does not listen on port {port}")


def create_time(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def is_running(service: Service) -> bool:
    """True when the recorded process is still alive and is the same process (not a reused pid)."""
    import psutil

    if service.popen is not None:
        # Our own child: its pid cannot be reused before we reap it, so poll() is the whole truth.
        return service.popen.poll() is None
    try:
        proc = psutil.Process(service.pid)
        # psutil rounds create_time to clock ticks; a reused pid differs by far more.
        return abs(proc.create_time() - service.create_time) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        # Our services lead their own group; a group kill also reaches redis' fork children (AOF rewrite).
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _wait_gone(service: Service, timeout: float, sleep: Callable[[float], None] = time.sleep) -> bool:
    if service.popen is not None:
        try:
            service.popen.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout
    while is_running(service):
        if time.monotonic() >= deadline:
            return False
        sleep(0.02)
    return True


def stop(service: Service, grace: float = 5.0) -> None:
    """SIGTERM the service's process group, SIGKILL after grace seconds, and wait until it is gone."""
    _owned.pop(service.pid, None)
    if not is_running(service):
        if service.popen is not None:
            service.popen.wait()
        return
    _signal_group(service.pid, signal.SIGTERM)
    if _wait_gone(service, grace):
        return
    _signal_group(service.pid, signal.SIGKILL)
    if not _wait_gone(service, 10.0):
        raise ServiceError(f"{service.name} pid {service.pid} survived SIGKILL; log {service.log}")


# Services this process started and owns; stopped at interpreter exit if nobody stopped them.
_owned: dict[int, Service] = {}


def own(service: Service) -> Service:
    _owned[service.pid] = service
    return service


@atexit.register
def _stop_owned() -> None:
    for service in list(_owned.values()):
        with contextlib.suppress(Exception):
            stop(service, grace=2.0)


# How Tansu (a Rust panic) and redis-server report a port someone else grabbed first.
_ADDR_IN_USE = ("AddrInUse", "Address in use", "Address already in use")


def start_service(name: str, *, port: int, port_setting: str, argv_for: Callable[[int], list[str]],
                  url_for: Callable[[int], str], probe: Callable[[str], Any], log: Path, owned: bool,
                  timeout: float, env: dict[str, str] | None = None, binary_setting: str = "",
                  prepare: Callable[[int], None] | None = None, attempts: int = 3) -> Service:
    """Spawn a server on port (0: a free one), wait until it listens there itself and probe(url) passes.

    A failed start leaves nothing running. With port 0, losing the race for the picked port to
    another process is retried with a fresh port.
    """
    for attempt in range(attempts if port == 0 else 1):
        chosen = port or free_port()
        if port and port_in_use(port):
            raise ServiceError(f"{name} port {port} on {LOOPBACK} is already in use "
                               f"(setting {port_setting}; 0 picks a free port)")
        if prepare is not None:
            prepare(chosen)
        offset = log_size(log)
        popen = spawn(name, argv_for(chosen), log, owned=owned, env=env, binary_setting=binary_setting)
        url = url_for(chosen)

        def check() -> None:
            require_listening(name, popen.pid, chosen)
            probe(url)

        try:
            wait_healthy(name, popen, check, timeout, log, offset)
        except BaseException as exc:
            stop(Service(name, popen.pid, LOOPBACK, chosen, url, log, 0.0, popen), grace=2.0)
            lost_race = port == 0 and any(m in log_tail(log, offset) for m in _ADDR_IN_USE)
            if isinstance(exc, ServiceError) and lost_race and attempt + 1 < attempts:
                continue
            raise
        service = Service(name, popen.pid, LOOPBACK, chosen, url, log, create_time(popen.pid), popen)
        return own(service) if owned else service
    raise AssertionError("unreachable: the loop returns or raises")
