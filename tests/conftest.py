"""Session-wide test fixtures: the real embedded broker and redis-server, started lazily, stopped at the end.

    broker        session: the Tansu broker's Service; .bootstrap is "127.0.0.1:PORT"
    redis_service session: the redis-server's Service (pid, port, url, log)
    redis_url     session: "redis://127.0.0.1:PORT/0"
    redis_client  function: a redis.Redis on that server, its DB flushed before the test
    make_topic    function: make_topic(partitions=4, prefix="t") -> a fresh topic name, created
    redis_cluster session: the nodes of a real 3-master Redis Cluster (started by the project)
    any_redis     function, parametrized "single" | "cluster": (url, is_cluster), flushed before the test
    aredis        function, parametrized likewise: an asyncio client of either

Tests using any of them are marked `integration` automatically. Logs: printed at the end of the run.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

SERVICE_FIXTURES = {"broker", "redis_service", "redis_url", "redis_client", "make_topic", "redis_cluster", "any_redis",
                    "aredis"}
_started: list = []


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter):
    if _started:
        terminalreporter.write_line("embedded services logs: " + "  ".join(str(s.log) for s in _started))


@pytest.fixture(scope="session")
def services_state_dir(tmp_path_factory) -> Path:
    """The state dir the session's services log into (<basetemp>/services0/services/*.log)."""
    return tmp_path_factory.mktemp("services")


def _session_service(start, state_dir: Path):
    from stream.services import stop

    service = start(state_dir)
    _started.append(service)
    try:
        yield service
    finally:
        stop(service)


@pytest.fixture(scope="session")
def broker(services_state_dir):
    from stream.services import start_broker

    yield from _session_service(start_broker, services_state_dir)


@pytest.fixture(scope="session")
def redis_service(services_state_dir):
    from stream.services import start_redis

    yield from _session_service(start_redis, services_state_dir)


@pytest.fixture(scope="session")
def redis_url(redis_service) -> str:
    return redis_service.url


@pytest.fixture
def redis_client(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def make_topic(broker):
    """Create uniquely named topics (tests share one broker) with an explicit partition count."""
    from stream.services import create_topic

    def make(partitions: int = 4, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        create_topic(broker.bootstrap, name, partitions)
        return name

    return make


@pytest.fixture(scope="session")
def redis_cluster(services_state_dir):
    from stream.services import stop
    from stream.services.redis_cluster import start_redis_cluster

    nodes = start_redis_cluster(services_state_dir / "cluster", 3)
    _started.extend(nodes)
    try:
        yield nodes
    finally:
        for n in nodes:
            stop(n)


@pytest.fixture(params=["single", "cluster"])
def any_redis(request):
    """(url, is_cluster) of the session's single redis-server or its 3-master cluster, flushed."""
    from stream.redis_client import sync_client

    cluster = request.param == "cluster"
    url = request.getfixturevalue("redis_cluster")[0].url if cluster else request.getfixturevalue("redis_url")
    client = sync_client(url, cluster)
    client.flushall()
    client.close()
    return url, cluster


@pytest.fixture
async def aredis(any_redis):
    from stream.redis_client import async_client

    client = async_client(*any_redis)
    yield client
    await client.aclose()
