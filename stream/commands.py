"""The `mobstream worker` and `mobstream replay` commands: flags -> one settings object -> run."""

from __future__ import annotations

from pathlib import Path

import typer

from mobstream import paths
from mobstream.settings import opt
from models.slots import DEFAULT_ORIGIN
from stream.security import with_security
from stream.services.state import bootstrap_option, redis_url_option

PARTITIONS_HELP = "Partitions of the pings topic (created with this many if missing); workers in one group split them."


@with_security()
def worker(
    bootstrap: str = bootstrap_option(),
    redis_url: str = redis_url_option(),
    app: str = opt("mobstream", "app", "App id: Kafka consumer group and Redis key prefix."),
    pings_topic: str = opt("pings", "pings_topic", "Input topic."),
    dlq_topic: str = opt("pings-dlq", "dlq_topic", "Dead-letter topic (original bytes + reason header)."),
    forecasts_topic: str = opt("flow-forecasts", "forecasts_topic", "Output topic of flow forecasts (key city:cell)."),
    embeddings_topic: str = opt("user-embeddings", "embeddings_topic", "Output topic of user embeddings (key uid)."),
    flows_topic: str = opt("flows", "flows_topic", "Output topic of each assembled slot's measured flows (key city:cell)."),
    partitions: int = opt(4, "partitions", PARTITIONS_HELP),
    lateness: float = opt(0.0, "lateness", "Allowed lateness in seconds: watermark = max event time - lateness."),
    ttl: int = opt(172_800, "ttl", "Seconds every window key lives after its last write."),
    retain_slots: int = opt(96, "retain_slots", "Slots of per-slot outputs (flows, forecasts, errors) kept in Redis; "
                            ">= 48, the dashboard's default history."),
    batch_size: int = opt(2000, "batch_size", "Most Kafka records in one partition batch handed to the Processor."),
    batch_wait: float = opt(0.05, "batch_wait", "Seconds to wait for a batch to fill."),
    web_port: int = opt(6066, "web_port", "Faust web port (0 = off); each worker on a host needs its own."),
    metrics_port: int = opt(9108, "metrics_port", "Prometheus /metrics port (0 = off); each worker its own."),
    session_timeout: float = opt(6.0, "session_timeout", "Kafka consumer session and rebalance timeout, seconds."),
    redis_timeout: float = opt(60.0, "redis_timeout", "Seconds a Redis reply may take before the worker counts Redis as "
                               "down and retries the batch; under load one reply can wait behind other workers' scripts."),
    redis_cluster: bool = opt(False, "redis_cluster", "MOBSTREAM_REDIS_URL names a node of a Redis Cluster: use redis-py's "
                              "cluster client (set by itself for `services up --redis-shards N`)."),
    grid_origin_lat: float = opt(35.30, "grid_origin_lat", "Latitude of the grid's south-west corner (lat/lon pings)."),
    grid_origin_lon: float = opt(139.20, "grid_origin_lon", "Longitude of the grid's south-west corner."),
    max_message_bytes: int = opt(1_048_576, "max_message_bytes", "Larger messages are dead-lettered as oversize."),
    max_future: float = opt(86_400.0, "max_future", "Pings more than this many seconds ahead of the wall clock are dead-lettered "
                            "(bad_timestamp) instead of moving the watermark; 0 = no check."),
    ts_from_kafka: bool = opt(False, "ts_from_kafka", "A ping without \"ts\" takes its Kafka record's timestamp as "
                              "its event time (else it is dead-lettered missing_field)."),
    origin: int = opt(DEFAULT_ORIGIN, "origin", "Epoch seconds of slot 0."),
    forecaster: Path = opt(None, "forecaster", "Flow forecaster checkpoint (watched; forecasts off when unset)."),
    embedder: Path = opt(None, "embedder", "Trajectory embedder checkpoint (watched; embeddings off when unset)."),
    torch_threads: int = opt(0, "torch_threads", "CPU threads for model inference (0 = torch's default, one per core); "
                             "1 when the worker shares its cores with Redis, the broker or other workers."),
    role: str = opt("all", "role", "ingest: pings -> windows, slot closing, slot work out (never imports torch); "
                    "infer: slot work -> forecasts, embeddings, live error; all: both in one process."),
    work_topic: str = opt("", "work_topic", "Internal slot-work topic (ingest -> infer); empty = <app>-slot-work."),
    work_partitions: int = opt(0, "work_partitions", "Partitions of the slot-work topic, the most infer workers that "
                               "share it (0 = --partitions); every worker of the app must use the same."),
    max_inference_lag: int = opt(0, "max_inference_lag", "Skip slot work more than this many slots behind the newest "
                                 "slot (counted in mobstream_work_skipped_total); 0 = never skip."),
    loglevel: str = opt("info", "loglevel", "Log level."),
    kafka_security=None,
    redis_security=None,
) -> None:
    """Run a stream worker: pings -> Redis windows, dead letters, slot closing, forecasts, embeddings."""
    from stream import worker as w
    from stream.services import resolve_endpoints
    from stream.settings import Topics, WorkerSettings, grid_limits

    ends = resolve_endpoints(bootstrap, redis_url)
    s = WorkerSettings(
        bootstrap=ends.bootstrap, redis_url=ends.redis_url, app=app,
        topics=Topics(pings_topic, dlq_topic, forecasts_topic, embeddings_topic, flows_topic, work_topic),
        partitions=partitions, lateness=lateness, ttl=ttl, retain_slots=retain_slots, batch_size=batch_size, batch_wait=batch_wait,
        web_port=web_port, metrics_port=metrics_port, session_timeout=session_timeout, redis_timeout=redis_timeout, origin=origin,
        redis_cluster=redis_cluster or ends.redis_cluster,
        limits=grid_limits(grid_origin_lat, grid_origin_lon, max_message_bytes, max_future, ts_from_kafka),
        forecaster=forecaster, embedder=embedder, torch_threads=torch_threads, data_dir=paths.state_dir() / "worker" / app,
        kafka_security=kafka_security, redis_security=redis_security, role=role, work_partitions=work_partitions,
        max_inference_lag=max_inference_lag,
    )
    w.run(s, loglevel)


@with_security(redis=False)
def replay(
    file: Path = typer.Argument(..., help="YJMob/HuMob file (uid,d,t,x,y) or raw GPS (uid,lat,lon,timestamp): CSV, CSV.gz, Parquet."),
    bootstrap: str = bootstrap_option(),
    pings_topic: str = opt("pings", "pings_topic", "Topic to replay into."),
    partitions: int = opt(4, "partitions", PARTITIONS_HELP),
    speed: float = opt(0.0, "speed", "Pace: event seconds per wall second (e.g. 60 = 60x real time); 0 = as fast as possible."),
    first_day: int = opt(None, "first_day", "First dataset day to replay (inclusive)."),
    last_day: int = opt(None, "last_day", "Last dataset day to replay (inclusive)."),
    users: str = opt(None, "users", "Only these uids: a list of uids and ranges, e.g. '1-100,205'."),
    single: bool = opt(False, "single", "One ping per Kafka message (keyed by uid) instead of batch messages."),
    batch_size: int = opt(1000, "replay_batch_size", "Pings per batch message."),
    city: str = opt(None, "city", "City of every ping (default: from the file name cityX_..., else A)."),
    lateness: float = opt(0.0, "lateness", "The workers' allowed lateness: the closing watermark adds it."),
    close_last: bool = opt(True, "close_last", "End with a watermark on every partition that closes the last slot."),
    origin: int = opt(DEFAULT_ORIGIN, "origin", "Epoch seconds of slot 0."),
    progress: bool = opt(True, "progress", "Show a progress bar with the rate."),
    skip_bad_rows: bool = opt(False, "skip_bad_rows", "Skip and count bad rows (GPS: bad timestamp, before --origin, "
                              "not finite; YJMob: out of range, repeated slot) instead of refusing the file "
                              "before anything is sent."),
    kafka_security=None,
) -> None:
    """Replay a dataset into the pings topic in event-time order (masked rows skipped and counted)."""
    from stream.replay import ReplaySettings, replay as run_replay
    from stream.replay_source import ReplayError
    from stream.services import resolve_endpoints

    if (first_day is None) != (last_day is None):
        raise ReplayError("settings first_day and last_day (MOBSTREAM_FIRST_DAY/LAST_DAY) go together")
    if batch_size < 1 or speed < 0:
        raise ReplayError("settings replay_batch_size must be >= 1 and speed >= 0")
    if bootstrap is None:
        bootstrap = resolve_endpoints(None, "unused").bootstrap
    s = ReplaySettings(file, bootstrap, pings_topic, partitions, speed,
                       None if first_day is None else (first_day, last_day), users, single, batch_size,
                       origin, lateness, city, close_last, progress, kafka_security, skip_bad_rows)
    rep = run_replay(s)
    typer.echo(f"replayed {rep.pings} pings in {rep.messages} messages in {rep.seconds:.2f} s "
               f"({rep.rate:,.0f} pings/s); {rep.masked} masked rows skipped"
               + (f"; {rep.bad} bad rows skipped" if rep.bad else ""))
