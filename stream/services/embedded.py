"""EmbeddedServices: the broker and Redis started together and always stopped together."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stream.services import process
from stream.services.broker import start_broker
from stream.exceptions import ServiceError
from stream.services.redis_cluster import start_redis_cluster
from stream.services.redis_server import start_redis
from stream.services.state import Endpoints, services_dir


@dataclasses.dataclass(frozen=True)
class ServicesConfig:
    """How to start the pair; every field is a `mobstream services up` setting."""

    state_dir: Path
    broker_port: int = 0
    redis_port: int = 0
    redis_password: str | None = None
    redis_aof: bool = False
    redis_data_dir: Path | None = None
    broker_bin: str | None = None
    redis_bin: str | None = None
    timeout: float = 20.0
    redis_shards: int = 0  # 0: one plain redis-server; N >= 2: an N-master Redis Cluster


class EmbeddedServices:
    """Start the broker, then Redis; a failure or Ctrl-C part-way stops whatever already started.

        with EmbeddedServices(ServicesConfig(state_dir)) as svc:
            run(svc.endpoints.bootstrap, svc.endpoints.redis_url)

    owned=True (the default) also ties both to this process (they die with it); `services up`
    passes owned=False so they outlive the command.
    """

    def __init__(self, config: ServicesConfig, *, owned: bool = True):
        self.config = config
        self.owned = owned
        self.broker: process.Service | None = None
        self.redis: process.Service | None = None
        self.shards: list[process.Service] = []  # the cluster's other masters (self.redis is its first)

    @property
    def log_dir(self) -> Path:
        return services_dir(self.config.state_dir)

    @property
    def endpoints(self) -> Endpoints:
        if self.broker is None or self.redis is None:
            raise RuntimeError("EmbeddedServices not started")
        return Endpoints(self.broker.bootstrap, self.redis.url, bool(self.shards))

    @property
    def services(self) -> dict[str, process.Service]:
        """Every running service by name, as the state file records them."""
        return {s.name: s for s in (self.broker, self.redis, *self.shards) if s is not None}

    def start(self) -> EmbeddedServices:
        c = self.config
        try:
            self.broker = start_broker(c.state_dir, port=c.broker_port, binary=c.broker_bin, timeout=c.timeout,
                                       owned=self.owned)
            if c.redis_shards:
                if c.redis_shards < 2 or c.redis_port or c.redis_aof:
                    raise ServiceError(f"setting redis_shards (MOBSTREAM_REDIS_SHARDS) = {c.redis_shards}: a cluster "
                                       "needs >= 2 masters, and picks its own ports without AOF (0 = one redis-server)")
                self.redis, *self.shards = start_redis_cluster(c.state_dir, c.redis_shards, password=c.redis_password,
                                                               binary=c.redis_bin, timeout=c.timeout, owned=self.owned)
            else:
                self.redis = start_redis(c.state_dir, port=c.redis_port, password=c.redis_password, aof=c.redis_aof,
                                         data_dir=c.redis_data_dir, binary=c.redis_bin, timeout=c.timeout,
                                         owned=self.owned)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop Redis then the broker; the broker is stopped even if stopping Redis fails."""
        redis, self.redis = self.redis, None
        broker, self.broker = self.broker, None
        shards, self.shards = self.shards, []
        try:
            for node in (*shards, redis):
                if node is not None:
                    process.stop(node)
        finally:
            if broker is not None:
                process.stop(broker)

    def __enter__(self) -> EmbeddedServices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
