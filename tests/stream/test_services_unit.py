"""Unit tests of the service plumbing that needs no running service: ports, state file, config, waiting."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stream.exceptions import ServiceError
from stream.services import process, state
from stream.services.redis_server import redact, redis_config, redis_url


def _service(pid: int, name: str = "broker", create_time: float = 0.0) -> process.Service:
    return process.Service(name, pid, "127.0.0.1", 9092, "127.0.0.1:9092", Path("/x/broker.log"), create_time)


def test_free_port_is_bindable_and_loopback():
    port = process.free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_port_in_use_sees_a_listener_only_while_it_listens():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert process.port_in_use(port)
    assert not process.port_in_use(port)


def test_state_round_trip_is_private(tmp_path):
    path = tmp_path / "services" / state.STATE_FILE
    services = {"broker": _service(123, create_time=1.5), "redis": _service(456, "redis", 2.0)}
    state.write_state(path, services)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert state.read_state(path) == services


def test_read_state_missing_file_is_none(tmp_path):
    assert state.read_state(tmp_path / "nope.json") is None


def test_read_state_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "services.json"
    path.write_text('{\n  "format": 1,\n  oops\n}')
    with pytest.raises(ServiceError, match=r"services\.json: not valid JSON \(line 3\)"):
        state.read_state(path)


def test_read_state_names_the_bad_field(tmp_path):
    path = tmp_path / "services.json"
    record = _service(1).to_record()
    record["port"] = "9092"
    path.write_text(json.dumps({"format": 1, "services": {"broker": record}}))
    with pytest.raises(ServiceError, match=r"'services\.broker\.port' missing or of the wrong type"):
        state.read_state(path)


def test_discover_without_state_file_is_none(tmp_path):
    assert state.discover(tmp_path) is None


def test_discover_stale_state_file_says_what_to_do(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    services = {"broker": _service(gone.pid), "redis": _service(os.getpid(), "redis")}
    state.write_state(state.state_path(tmp_path), services)
    with pytest.raises(ServiceError, match="not running any more; run `mobstream services down`"):
        state.discover(tmp_path)


def test_discover_reads_live_services(tmp_path):
    me = process.create_time(os.getpid())
    services = {"broker": _service(os.getpid(), create_time=me), "redis": _service(os.getpid(), "redis", me)}
    state.write_state(state.state_path(tmp_path), services)
    assert state.discover(tmp_path)[:2] == ("127.0.0.1:9092", "127.0.0.1:9092")


def test_resolve_endpoints_explicit_settings_win(tmp_path):
    got = state.resolve_endpoints("k:1", "redis://r:2/0", tmp_path)
    assert got == state.Endpoints("k:1", "redis://r:2/0")


def test_resolve_endpoints_names_missing_settings(tmp_path):
    with pytest.raises(ServiceError, match="no MOBSTREAM_REDIS_URL set and no embedded services"):
        state.resolve_endpoints("k:1", None, tmp_path)


def test_redis_url_quotes_and_redacts_password():
    url = redis_url(6379, "p@ss/w:rd")
    assert url == "redis://:p%40ss%2Fw%3Ard@127.0.0.1:6379/0"
    assert redact(url) == "redis://:***@127.0.0.1:6379/0"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_redis_config_quotes_strings_and_defaults_to_no_persistence():
    conf = redis_config(7000, password='a"b\\c', aof=False, data_dir=Path("/d ir"))
    assert 'requirepass "a\\"b\\\\c"' in conf
    assert 'dir "/d ir"' in conf and "appendonly no" in conf and 'save ""' in conf and "bind 127.0.0.1" in conf
    assert "appendonly yes" in redis_config(7000, password=None, aof=True, data_dir=Path("/d"))


class _FakeChild:
    def __init__(self, code=None):
        self.code = code

    def poll(self):
        return self.code


def _fake_clock():
    now = [0.0]
    return (lambda: now[0]), (lambda dt: now.__setitem__(0, now[0] + dt))


def test_wait_healthy_times_out_with_log_and_last_error(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("booting\n")
    clock, sleep = _fake_clock()

    def never():
        raise ConnectionRefusedError("nope")

    with pytest.raises(ServiceError, match=r"(?s)x not healthy after 3 s.*ConnectionRefusedError.*booting"):
        process.wait_healthy("x", _FakeChild(), never, 3.0, log, 0, clock=clock, sleep=sleep)


def test_wait_healthy_reports_an_early_exit(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("old run\n=== new\npanicked: AddrInUse\n")
    with pytest.raises(ServiceError, match=r"(?s)x exited with code 101.*AddrInUse") as info:
        process.wait_healthy("x", _FakeChild(101), lambda: None, 3.0, log, len("old run\n"))
    assert "old run" not in str(info.value)


def test_wait_healthy_returns_time_taken():
    clock, sleep = _fake_clock()
    calls = []

    def ready_third_time():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("not yet")

    took = process.wait_healthy("x", _FakeChild(), ready_third_time, 3.0, Path("/nope"), 0, clock=clock, sleep=sleep)
    assert len(calls) == 3 and took == pytest.approx(0.015)


def test_cli_status_without_services_exits_1(tmp_path):
    from stream.services_cli import app

    result = CliRunner().invoke(app, ["status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no state file" in result.output


def test_cli_down_without_services_is_a_no_op(tmp_path):
    from stream.services_cli import app

    result = CliRunner().invoke(app, ["down", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0 and "nothing was running" in result.output


def test_start_service_retries_a_lost_port_race_then_gives_up(tmp_path):
    log = tmp_path / "x.log"
    lose = [sys.executable, "-c", "print('bind: Address already in use'); raise SystemExit(1)"]
    with pytest.raises(ServiceError, match="x exited with code 1"):
        process.start_service("x", port=0, port_setting="S", argv_for=lambda p: lose, url_for=str,
                              probe=lambda url: None, log=log, owned=True, timeout=10)
    assert log.read_text().count("=== mobstream: starting x") == 3


def _http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


def test_start_service_waits_for_its_own_listener_and_stops_it(tmp_path):
    server = _http_server
    service = process.start_service("web", port=0, port_setting="S", argv_for=server,
                                    url_for=lambda p: f"http://127.0.0.1:{p}/", probe=lambda url: None,
                                    log=tmp_path / "web.log", owned=True, timeout=20)
    try:
        assert process.listens_on(service.pid, service.port) and process.is_running(service)
    finally:
        process.stop(service)
    assert not process.is_running(service) and service.popen.returncode is not None
