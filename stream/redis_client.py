"""Redis clients of every process: one redis-server (the default) or a Redis Cluster through redis-py's
cluster client (`--redis-cluster` / MOBSTREAM_REDIS_CLUSTER=1, the URL of any node)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from mobstream.settings import env

CLUSTER_SETTING = "redis_cluster"
TRUE = {"1", "true", "yes", "on"}


def cluster_from_env(environ=None) -> bool:
    e = os.environ if environ is None else environ
    return e.get(env(CLUSTER_SETTING), "").strip().lower() in TRUE


def is_cluster(client) -> bool:
    import redis
    import redis.asyncio

    return isinstance(client, (redis.RedisCluster, redis.asyncio.RedisCluster))


def sync_client(url: str, cluster: bool = False, **kw):
    """A redis.Redis, or a redis.RedisCluster that finds every node from the one in `url`."""
    import redis

    if cluster:
        return redis.RedisCluster.from_url(_cluster_url(url), **kw)
    return redis.Redis.from_url(url, **kw)


def async_client(url: str, cluster: bool = False, **kw):
    """The asyncio flavour of `sync_client`."""
    import redis.asyncio as aioredis

    if cluster:
        kw.pop("health_check_interval", None)
        return aioredis.RedisCluster.from_url(_cluster_url(url), **kw)
    return aioredis.Redis.from_url(url, **kw)


def _cluster_url(url: str) -> str:
    """A cluster has database 0 only: a trailing /0 is dropped, any other database refused."""
    from urllib.parse import urlsplit

    from stream.exceptions import StreamError

    path = urlsplit(url).path.strip("/")
    if path not in ("", "0"):
        raise StreamError(f"setting redis_url ({env('redis_url')}): a Redis Cluster has database 0 only, got /{path}")
    return url.rstrip("/").removesuffix("/0")


@contextlib.asynccontextmanager
async def connection_for(client, key: bytes | str):
    """A pooled asyncio connection to the node that holds `key` (the client's one Redis when not a cluster),
    for commands packed by hand; dropped, not pooled, when anything fails with replies left unread."""
    if is_cluster(client):
        await client.initialize()  # a no-op once the slot map is known
        node = client.get_node_from_key(key)
        conn = node.acquire_connection()
        release = node.release
    else:
        conn = await client.connection_pool.get_connection()
        release = client.connection_pool.release
    try:
        yield conn
    except BaseException:
        await conn.disconnect()
        raise
    finally:
        rel = release(conn)
        if hasattr(rel, "__await__"):
            await rel


@dataclass(frozen=True)
class Packed:
    """Commands packed by hiredis, ready to send: the bytes, how many replies they get, the key that picks the
    node (the first command's first key), and whether they form one MULTI/EXEC."""

    data: bytes
    replies: int
    key: bytes | str
    transaction: bool


def pack(commands: list[tuple], transaction: bool = False) -> Packed:
    """hiredis packs in C (redis-py packs each argument in Python: ~1.5 us each, 0.2 s for a 40,000-field HSET;
    hiredis 0.03 s). It holds the GIL for a whole command, so callers keep commands to a few thousand
    arguments (`chunked`) and pack in a thread: the event loop then waits at most a few ms for the GIL."""
    import hiredis

    wrapped = [("MULTI",), *commands, ("EXEC",)] if transaction else commands
    key = commands[0][1] if commands[0][0] not in ("EVALSHA", "EVAL") else commands[0][3]
    return Packed(b"".join(map(hiredis.pack_command, wrapped)), len(wrapped), key, transaction)


def chunked(command: str, key, pairs: list, n: int = 2048) -> list[tuple]:
    """`command key *pairs` as several commands of at most `n` arguments after the key (HSET/ZADD style pairs:
    `n` even): what one hiredis call packs in ~1 ms."""
    return [(command, key, *pairs[i:i + n]) for i in range(0, len(pairs), n)]


async def execute_packed(client, p: Packed) -> list:
    """Run `pack`ed commands on one pooled connection. Every command's first key must share one hash tag: on a
    cluster, the node of the first command's key runs them all. Returns the replies (a transaction's: EXEC's);
    raises the first error reply."""
    from stream.exceptions import StreamError

    async with connection_for(client, p.key) as conn:
        await conn.send_packed_command(p.data)
        replies = []
        for _ in range(p.replies):  # with MULTI: +OK, +QUEUED per command (a queueing error raises here), then EXEC's
            try:
                replies.append(await conn.read_response())
            except Exception as exc:  # an error reply: read the rest, so the connection can be pooled again
                replies.append(exc)
    if p.transaction:
        queued, replies = replies[:-1], replies[-1]
        for reply in queued:  # a queueing error: EXEC aborted the whole transaction
            if isinstance(reply, Exception):
                raise reply
        if replies is None:
            raise StreamError("Redis aborted the transaction (EXEC returned nil)")
        if isinstance(replies, Exception):  # EXECABORT: a command failed to queue, none ran
            raise replies
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies
