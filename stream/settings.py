"""Settings of the online commands: one frozen dataclass per process, built from CLI flags and MOBSTREAM_*."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from models.grid import GridSpec
from models.slots import DEFAULT_ORIGIN
from stream.exceptions import StreamError
from stream.keys import Keys
from stream.pings import Limits
from stream.security import KafkaSecurity, RedisSecurity

PINGS_TOPIC = "pings"
DLQ_TOPIC = "pings-dlq"
FORECASTS_TOPIC = "flow-forecasts"
EMBEDDINGS_TOPIC = "user-embeddings"
FLOWS_TOPIC = "flows"
WORK_TOPIC = ""  # the slot-work topic; empty = "<app>-slot-work" (internal to one app)
ROLES = ("all", "ingest", "infer")
# The dashboard's default history (dashboard/settings.py history_slots): fewer retained slots would blank its charts.
DASHBOARD_HISTORY_SLOTS = 48


class SettingsError(StreamError):
    """A worker or replay setting has a bad value."""


@dataclass(frozen=True)
class Topics:
    pings: str = PINGS_TOPIC
    dlq: str = DLQ_TOPIC
    forecasts: str = FORECASTS_TOPIC
    embeddings: str = EMBEDDINGS_TOPIC
    flows: str = FLOWS_TOPIC
    work: str = WORK_TOPIC
    repartition: str = ""  # "" = "<app>-<pings>-repartition" (internal: one per consumer group)


@dataclass(frozen=True)
class WorkerSettings:
    """Everything `mobstream worker` runs with."""

    bootstrap: str
    redis_url: str
    app: str = "mobstream"
    topics: Topics = field(default_factory=Topics)
    partitions: int = 4
    lateness: float = 0.0
    ttl: int = 172_800
    retain_slots: int = 96
    batch_size: int = 2000
    batch_wait: float = 0.05
    web_port: int = 6066
    metrics_port: int = 9108
    session_timeout: float = 6.0
    redis_timeout: float = 60.0  # seconds one Redis reply may take before the batch is retried
    redis_cluster: bool = False  # redis_url names a node of a Redis Cluster
    origin: int = DEFAULT_ORIGIN
    limits: Limits = field(default_factory=Limits)
    forecaster: Path | None = None
    embedder: Path | None = None
    model_poll: float = 5.0
    torch_threads: int = 0  # 0 = torch's default (one per core)
    role: str = "all"  # ingest (pings -> windows, slot work out), infer (slot work -> outputs), or both
    work_partitions: int = 0  # partitions of the slot-work topic; 0 = as many as the pings topic
    max_inference_lag: int = 0  # slots: older work is skipped (and counted); 0 = never skip
    data_dir: Path = Path("var/worker")
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    redis_security: RedisSecurity = field(default_factory=RedisSecurity)

    def __post_init__(self) -> None:
        checks = [
            (self.partitions >= 1, "partitions", "must be >= 1"),
            (self.lateness >= 0, "lateness", "must be >= 0 seconds"),
            (self.ttl >= 3600, "ttl", "must be >= 3600 seconds (window keys would expire mid-window)"),
            (self.retain_slots >= DASHBOARD_HISTORY_SLOTS, "retain_slots",
             f"must be >= {DASHBOARD_HISTORY_SLOTS} (the dashboard's default history_slots reads that many slots back)"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
            (self.batch_wait > 0, "batch_wait", "must be > 0 seconds"),
            (self.session_timeout >= 1, "session_timeout", "must be >= 1 second"),
            (self.redis_timeout >= 1, "redis_timeout", "must be >= 1 second"),
            (self.torch_threads >= 0, "torch_threads", "must be >= 0 (0 = torch's default, one per core)"),
            (self.role in ROLES, "role", f"must be one of {', '.join(ROLES)}"),
            (self.work_partitions >= 0, "work_partitions", "must be >= 0 (0 = as many as partitions)"),
            (self.max_inference_lag >= 0, "max_inference_lag", "must be >= 0 slots (0 = never skip)"),
            (self.app.replace("-", "").replace("_", "").isalnum(), "app", "must be letters, digits, - or _"),
        ]
        for ok, name, why in checks:
            if not ok:
                raise SettingsError(f"setting {name} (MOBSTREAM_{name.upper()}) = {getattr(self, name)!r} {why}")

    @property
    def repartition_topic(self) -> str:
        """Where pings that arrive on a partition not owning their user go (stream.repartition)."""
        return self.topics.repartition or f"{self.app}-{self.topics.pings}-repartition"

    @property
    def keys(self) -> Keys:
        return Keys(self.app)

    @property
    def work_topic(self) -> str:
        return self.topics.work or f"{self.app}-slot-work"

    @property
    def n_work_partitions(self) -> int:
        return self.work_partitions or self.partitions

    def runs(self, role: str) -> bool:
        """Does this worker run `role` (ingest or infer)?"""
        return self.role in (role, "all")


def grid_limits(origin_lat: float, origin_lon: float, max_bytes: int, max_future: float = 86_400.0,
                ts_from_kafka: bool = False) -> Limits:
    """Limits for a grid whose south-west corner is (origin_lat, origin_lon)."""
    from models.exceptions import GridError

    try:
        grid = GridSpec(origin_lat, origin_lon)
    except GridError as exc:
        raise SettingsError(f"settings grid_origin_lat/grid_origin_lon: {exc}") from exc
    if max_bytes < 256:
        raise SettingsError(f"setting max_message_bytes (MOBSTREAM_MAX_MESSAGE_BYTES) = {max_bytes} must be >= 256")
    if max_future < 0:
        raise SettingsError(f"setting max_future (MOBSTREAM_MAX_FUTURE) = {max_future} must be >= 0 (0: no check)")
    return Limits(grid=grid, max_bytes=max_bytes, max_future=max_future, ts_from_kafka=ts_from_kafka)
