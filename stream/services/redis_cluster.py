"""An N-master Redis Cluster of real redis-server processes on loopback, formed by the project.

Each node is a cluster-enabled redis-server (stream.services.redis_server); the 16,384 hash slots are
split evenly, the nodes MEET the first one, and the cluster counts as up once every node reports
cluster_state:ok and agrees on the slot map. No replicas: it is for tests and local scale-out.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from stream.exceptions import ServiceError
from stream.services import process
from stream.services.redis_server import start_redis

HASH_SLOTS = 16_384
NODE_PREFIX = "redis-shard-"
# A node also listens on its port + 10,000 (the cluster bus; redis 6.2 has no cluster-port setting).
BUS_OFFSET = 10_000
PORTS = (20_000, 55_535)


def cluster_port() -> int:
    """A free port whose bus port is free too (the kernel's free-port pick may lie above 55,535)."""
    for _ in range(200):
        p = random.randint(*PORTS)
        if not process.port_in_use(p) and not process.port_in_use(p + BUS_OFFSET):
            return p
    raise ServiceError(f"no free port pair (p, p + {BUS_OFFSET}) in {PORTS} for a redis cluster node")


def node_name(i: int) -> str:
    """The first node is "redis" (its URL is the one clients start from), the others redis-shard-<i>."""
    return "redis" if i == 0 else f"{NODE_PREFIX}{i}"


def slot_ranges(shards: int) -> list[range]:
    """The hash slots of each master: contiguous, as even as 16,384 allows."""
    cuts = [HASH_SLOTS * i // shards for i in range(shards + 1)]
    return [range(a, b) for a, b in zip(cuts, cuts[1:])]


def start_redis_cluster(state_dir: Path, shards: int, *, password: str | None = None, binary: str | None = None,
                        timeout: float = 20.0, owned: bool = True) -> list[process.Service]:
    """Start `shards` masters and form the cluster; on any failure, stop what started and raise."""
    if shards < 1:
        raise ServiceError(f"setting redis_shards (MOBSTREAM_REDIS_SHARDS) = {shards}: must be >= 1")
    nodes: list[process.Service] = []
    try:
        for i in range(shards):
            nodes.append(start_redis(state_dir, port=cluster_port(), password=password, binary=binary,
                                     timeout=timeout, owned=owned, name=node_name(i), cluster=True))
        form(nodes, password, timeout)
    except BaseException:
        for n in reversed(nodes):
            process.stop(n, grace=2.0)
        raise
    return nodes


def _client(node: process.Service, password: str | None):
    import redis

    return redis.Redis(host=node.host, port=node.port, password=password, socket_timeout=5.0)


def form(nodes: list[process.Service], password: str | None, timeout: float) -> None:
    """Give each node its slots, introduce it to the first, and wait until all agree the cluster is ok."""
    clients = [_client(n, password) for n in nodes]
    try:
        for c, slots in zip(clients, slot_ranges(len(nodes))):
            c.execute_command("CLUSTER ADDSLOTS", *slots)
        for c in clients[1:]:
            c.execute_command("CLUSTER MEET", nodes[0].host, nodes[0].port)
        deadline = time.monotonic() + timeout
        while True:
            states = [c.execute_command("CLUSTER INFO") for c in clients]
            ok = [_info(s).get("cluster_state") == "ok" and _info(s).get("cluster_known_nodes") == str(len(nodes))
                  for s in states]
            if all(ok):
                return
            if time.monotonic() > deadline:
                bad = [n.name for n, good in zip(nodes, ok) if not good]
                raise ServiceError(f"redis cluster of {len(nodes)} did not form within {timeout:.0f} s "
                                   f"(not ok: {', '.join(bad)}; logs in {nodes[0].log.parent})")
            time.sleep(0.1)
    finally:
        for c in clients:
            c.close()


def _info(text) -> dict[str, str]:
    if isinstance(text, bytes):
        text = text.decode()
    if isinstance(text, dict):
        return {k: str(v) for k, v in text.items()}
    return dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)


def cluster_state(url: str, timeout: float = 2.0) -> str:
    """The node's cluster_state ("ok" once every hash slot is served)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return _info(client.execute_command("CLUSTER INFO")).get("cluster_state", "?")
    finally:
        client.close()
