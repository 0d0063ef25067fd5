"""Embedded services: a Tansu broker and a real redis-server on loopback ports, started, checked, stopped.

Public surface (see docs/services.md):
  start_broker, start_redis, stop, is_running   one service at a time
  EmbeddedServices, ServicesConfig              both, always stopped together
  discover, resolve_endpoints, Endpoints        where `mobstream services up` put them
  create_topic, create_topic_async              topics with an explicit partition count
"""

from stream.services.broker import create_topic, create_topic_async, metadata, start_broker
from stream.services.embedded import EmbeddedServices, ServicesConfig
from stream.services.process import Service, free_port, is_running, stop
from stream.services.redis_server import ping, redact, start_redis
from stream.services.state import (
    BOOTSTRAP_SETTING,
    REDIS_URL_SETTING,
    Endpoints,
    bootstrap_option,
    discover,
    read_state,
    redis_url_option,
    resolve_endpoints,
    services_dir,
    state_path,
    write_state,
)

__all__ = [
    "BOOTSTRAP_SETTING", "REDIS_URL_SETTING", "EmbeddedServices", "Endpoints", "Service", "ServicesConfig",
    "bootstrap_option", "create_topic", "create_topic_async", "discover", "free_port", "is_running", "metadata",
    "ping", "read_state", "redact", "redis_url_option", "resolve_endpoints", "services_dir", "start_broker",
    "start_redis", "state_path", "stop", "write_state",
]
