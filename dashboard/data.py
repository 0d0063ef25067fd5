"""The dashboard's cached access to Redis: one client per URL, readers cached per (city, slot).

Only `stream.readers` touches Redis, and only to read. A closed slot's flows and forecasts never
change once assembled, so they are cached by slot; the "now" (latest slots, watermarks) is read fresh
on every refresh and costs two small round trips.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import streamlit as st

from dashboard.settings import DashboardSettings
from stream import readers
from stream.keys import Keys

log = logging.getLogger(__name__)


class NoRedis(Exception):
    """No Redis URL is set and `mobstream services up` is not running."""


@st.cache_resource(show_spinner=False)
def _client(url: str, cluster: bool):
    from stream.redis_client import sync_client
    from stream.security import redis_kwargs, redis_security_from_env

    return sync_client(url, cluster, socket_connect_timeout=1.0, socket_timeout=5.0, health_check_interval=30,
                       **redis_kwargs(url, redis_security_from_env()))


def redis_url(s: DashboardSettings) -> tuple[str, bool]:
    """The Redis URL and whether it names a cluster node: the settings', else `mobstream services up`'s."""
    if s.redis_url:
        return s.redis_url, s.redis_cluster
    from stream.services import discover

    found = discover()
    if found is None:
        raise NoRedis("no MOBSTREAM_REDIS_URL is set and `mobstream services up` is not running")
    return found.redis_url, found.redis_cluster


def client(s: DashboardSettings):
    return _client(*redis_url(s))


def keys(s: DashboardSettings) -> Keys:
    return Keys(s.app)


def now(s: DashboardSettings) -> tuple[dict[str, int], dict[int, float]]:
    """(city -> latest assembled slot, partition -> watermark): read fresh every refresh."""
    r, k = client(s), keys(s)
    return readers.latest_slots(r, k), readers.watermarks(r, k)


def published(s: DashboardSettings, city: str) -> int | None:
    """The newest slot of `city` whose forecasts are published (read fresh: the map shows this slot)."""
    return readers.published_slot(client(s), keys(s), city)


@st.cache_resource(show_spinner=False, max_entries=16, ttl=3600)
def flows(url: tuple, app: str, city: str, slot: int) -> np.ndarray:
    """(3, 200, 200) actuals of a closed slot (immutable once assembled, so cached by slot)."""
    return readers.flow_grid(_client(*url), Keys(app), city, slot)


@st.cache_resource(show_spinner=False, max_entries=16, ttl=60)
def forecasts(url: tuple, app: str, city: str, made_at: int, horizon: int = 1) -> np.ndarray:
    """(3, 200, 200) forecast made at the close of `made_at` for made_at + horizon, NaN where none (short TTL:
    written after assembly)."""
    return readers.forecast_grid(_client(*url), Keys(app), city, made_at, horizon=horizon)


@st.cache_resource(show_spinner=False, max_entries=4, ttl=600)
def embeddings(url: tuple, app: str, city: str, slot: int, limit: int) -> tuple[list[str], np.ndarray]:
    """Up to `limit` users' embeddings (lowest uids first, so the sample is stable between slots)."""
    r, k = _client(*url), Keys(app)
    return readers.embeddings(r, k, city, readers.embedding_uids(r, k, city, limit))


def describe(exc: BaseException, s: DashboardSettings) -> str:
    """A one-paragraph message for a failed panel: what failed and what to do; never a traceback."""
    import redis

    if isinstance(exc, NoRedis):
        return f"Not connected: {exc}. Start it, or set MOBSTREAM_REDIS_URL / `--redis-url`."
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        url = s.redis_url or "the redis of `mobstream services up`"
        return f"Redis is unreachable at {_redact(url)}: {exc}. Is the redis-server up? (setting MOBSTREAM_REDIS_URL)"
    return f"{type(exc).__name__}: {exc}"


def _redact(url: str) -> str:
    from stream.services import redact

    return redact(url)


@contextlib.contextmanager
def guard(what: str, s: DashboardSettings):
    """Run one panel; any error becomes a clear message in its place (Streamlit's rerun/stop pass through)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the page must never show a traceback
        log.warning("%s failed: %s", what, exc, exc_info=not isinstance(exc, (NoRedis, ConnectionError)))
        st.error(f"**{what}** — {describe(exc, s)}", icon="⚠️")
