"""Kafka SASL/SSL and Redis password/ACL/TLS settings, and the client kwargs (aiokafka, Faust, redis-py) they map to.

Everything here is a pure function of the settings except `ssl_context` (reads the PEM files)
and `check_redis` (one PING). The defaults are the insecure local setup: PLAINTEXT Kafka and
Redis without a password, meant for loopback only (docs/security.md).
"""

from __future__ import annotations

import functools
import inspect
import os
import ssl
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from mobstream.settings import env, opt
from stream.exceptions import StreamError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SecurityError(StreamError):
    """A security setting is inconsistent, names a missing file, or the server refused the credentials."""


def _check_file(name: str, path: Path | None) -> None:
    if path is not None and not Path(path).is_file():
        raise SecurityError(f"setting {name} ({env(name)}) = {str(path)!r}: no such file")


@dataclass(frozen=True)
class KafkaSecurity:
    """How every Kafka client of a process authenticates: protocol, SASL mechanism and user, TLS files."""

    protocol: str = "PLAINTEXT"
    mechanism: str = "PLAIN"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: str | None = field(default=None, repr=False)
    check_hostname: bool = True

    def __post_init__(self) -> None:
        p = "kafka_security_protocol"
        if self.protocol not in PROTOCOLS:
            raise SecurityError(f"setting {p} ({env(p)}) = {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.mechanism not in MECHANISMS:
            raise SecurityError(f"setting kafka_sasl_mechanism ({env('kafka_sasl_mechanism')}) = "
                                f"{self.mechanism!r} is not one of {', '.join(MECHANISMS)}")
        if self.sasl:
            for name in ("username", "password"):
                if not getattr(self, name):
                    raise SecurityError(f"setting kafka_sasl_{name} ({env('kafka_sasl_' + name)}) is required "
                                        f"with {p} = {self.protocol}")
        elif self.username or self.password:
            raise SecurityError(f"settings kafka_sasl_username/password are set but {p} ({env(p)}) = "
                                f"{self.protocol}; use SASL_PLAINTEXT or SASL_SSL")
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            raise SecurityError(f"Kafka TLS files are set but {p} ({env(p)}) = {self.protocol}; use SSL or SASL_SSL")
        _check_tls_files("kafka_ssl", self.ca_file, self.cert_file, self.key_file)

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")


@dataclass(frozen=True)
class RedisSecurity:
    """How every Redis client of a process authenticates: ACL user, password, TLS files (rediss:// URLs)."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    check_hostname: bool = True

    def __post_init__(self) -> None:
        if self.username and not self.password:
            raise SecurityError(f"setting redis_username ({env('redis_username')}) needs redis_password "
                                f"({env('redis_password')})")
        _check_tls_files("redis_ssl", self.ca_file, self.cert_file, self.key_file)


def _check_tls_files(prefix: str, ca: Path | None, cert: Path | None, key: Path | None) -> None:
    for suffix, path in (("ca_file", ca), ("cert_file", cert), ("key_file", key)):
        _check_file(f"{prefix}_{suffix}", path)
    if (cert is None) != (key is None):
        raise SecurityError(f"settings {prefix}_cert_file ({env(prefix + '_cert_file')}) and {prefix}_key_file "
                            f"({env(prefix + '_key_file')}) go together (client certificate and its key)")


def ssl_context(ca_file: Path | None, cert_file: Path | None, key_file: Path | None,
                key_password: str | None = None, check_hostname: bool = True) -> ssl.SSLContext:
    """A client TLS context: the CA file (else the system CAs), an optional client certificate."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.check_hostname = check_hostname
    if cert_file:
        ctx.load_cert_chain(str(cert_file), str(key_file), password=key_password)
    return ctx


def kafka_ssl_context(sec: KafkaSecurity) -> ssl.SSLContext | None:
    if not sec.tls:
        return None
    try:
        return ssl_context(sec.ca_file, sec.cert_file, sec.key_file, sec.key_password, sec.check_hostname)
    except (ssl.SSLError, OSError) as exc:
        raise SecurityError(f"settings kafka_ssl_ca_file/cert_file/key_file ({env('kafka_ssl_ca_file')}, ...): "
                            f"cannot load: {exc}") from exc


def aiokafka_kwargs(sec: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer, AIOKafkaAdminClient and AIOKafkaClient."""
    kw: dict[str, Any] = {"security_protocol": sec.protocol}
    if sec.tls:
        kw["ssl_context"] = kafka_ssl_context(sec)
    if sec.sasl:
        kw.update(sasl_mechanism=sec.mechanism, sasl_plain_username=sec.username, sasl_plain_password=sec.password)
    return kw


def librdkafka_config(sec: KafkaSecurity) -> dict[str, Any]:
    """Entries for a confluent-kafka (librdkafka) client config dict: the same settings, librdkafka's names."""
    conf: dict[str, Any] = {"security.protocol": sec.protocol.lower()}
    if sec.sasl:
        conf.update({"sasl.mechanisms": sec.mechanism, "sasl.username": sec.username, "sasl.password": sec.password})
    if sec.tls:
        files = {"ssl.ca.location": sec.ca_file, "ssl.certificate.location": sec.cert_file,
                 "ssl.key.location": sec.key_file, "ssl.key.password": sec.key_password}
        conf.update({k: str(v) for k, v in files.items() if v})
        conf["ssl.endpoint.identification.algorithm"] = "https" if sec.check_hostname else "none"
    return conf


def faust_kwargs(sec: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for faust.App: `broker_credentials` (faust maps it to the aiokafka kwargs above)."""
    if sec.protocol == "PLAINTEXT":
        return {}
    import faust

    ctx = kafka_ssl_context(sec)
    if not sec.sasl:
        return {"broker_credentials": faust.SSLCredentials(ctx)}
    # faust switches SASLCredentials to SASL_SSL exactly when it is given an ssl_context.
    return {"broker_credentials": faust.SASLCredentials(username=sec.username, password=sec.password,
                                                        ssl_context=ctx, mechanism=sec.mechanism)}


def redis_kwargs(url: str, sec: RedisSecurity) -> dict[str, Any]:
    """Keyword arguments for redis.Redis.from_url(url, ...) (sync and asyncio alike)."""
    parts = urlsplit(url)
    kw: dict[str, Any] = {}
    if sec.password:
        if parts.password and unquote(parts.password) != sec.password:
            # redis-py lets the URL win silently; two different passwords are a configuration error.
            raise SecurityError(f"setting redis_password ({env('redis_password')}) differs from the password "
                                f"in MOBSTREAM_REDIS_URL: keep one")
        kw["password"] = sec.password
        if sec.username:
            kw["username"] = sec.username
    tls_set = sec.ca_file or sec.cert_file
    if tls_set and parts.scheme != "rediss":
        raise SecurityError(f"Redis TLS files are set ({env('redis_ssl_ca_file')}, ...) but MOBSTREAM_REDIS_URL "
                            f"uses {parts.scheme}://; TLS needs a rediss:// URL")
    if parts.scheme == "rediss":
        kw["ssl_cert_reqs"] = "required"
        kw["ssl_check_hostname"] = sec.check_hostname
        if sec.ca_file:
            kw["ssl_ca_certs"] = str(sec.ca_file)
        if sec.cert_file:
            kw.update(ssl_certfile=str(sec.cert_file), ssl_keyfile=str(sec.key_file))
    return kw


def check_redis(url: str, sec: RedisSecurity, timeout: float = 5.0) -> None:
    """PING Redis with these settings; SecurityError naming the setting when it refuses them."""
    import redis

    from stream.services import redact

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                  **redis_kwargs(url, sec))
    where = redact(url)
    given = bool(sec.password or urlsplit(url).password)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        if not given:
            raise SecurityError(f"Redis at {where} needs a password: set redis_password ({env('redis_password')}) "
                                "or put it in MOBSTREAM_REDIS_URL") from exc
        raise SecurityError(f"Redis at {where} refused the credentials ({exc}): check redis_password "
                            f"({env('redis_password')}), redis_username ({env('redis_username')}) or the "
                            "password in MOBSTREAM_REDIS_URL") from exc
    except redis.ResponseError as exc:
        if "NOAUTH" not in str(exc) and "NOPERM" not in str(exc):
            raise
        raise SecurityError(f"Redis at {where} needs a password: set redis_password ({env('redis_password')}) "
                            f"or put it in MOBSTREAM_REDIS_URL ({exc})") from exc
    except redis.ConnectionError as exc:
        if "certificate" in str(exc).lower():
            raise SecurityError(f"Redis at {where}: TLS verification failed ({exc}); check redis_ssl_ca_file "
                                f"({env('redis_ssl_ca_file')}) and redis_ssl_check_hostname "
                                f"({env('redis_ssl_check_hostname')})") from exc
        raise SecurityError(f"cannot reach Redis at {where} (MOBSTREAM_REDIS_URL): {exc}") from exc
    finally:
        client.close()


KAFKA_OPTIONS = {
    "kafka_security_protocol": (str, "PLAINTEXT", f"Kafka security protocol: {', '.join(PROTOCOLS)}."),
    "kafka_sasl_mechanism": (str, "PLAIN", f"SASL mechanism: {', '.join(MECHANISMS)}."),
    "kafka_sasl_username": (str, None, "SASL username."),
    "kafka_sasl_password": (str, None, "SASL password (prefer the variable: flags show in `ps`)."),
    "kafka_ssl_ca_file": (Path, None, "CA bundle (PEM) that signed the brokers' certificates (default: system CAs)."),
    "kafka_ssl_cert_file": (Path, None, "Client certificate (PEM) for mutual TLS."),
    "kafka_ssl_key_file": (Path, None, "Client private key (PEM) for mutual TLS."),
    "kafka_ssl_key_password": (str, None, "Password of the client key, if encrypted."),
    "kafka_ssl_check_hostname": (bool, True, "Check the broker certificate's host name."),
}
REDIS_OPTIONS = {
    "redis_username": (str, None, "Redis ACL user (needs redis_password)."),
    "redis_password": (str, None, "Redis password (or put it in the URL; prefer the variable: flags show in `ps`)."),
    "redis_ssl_ca_file": (Path, None, "CA bundle (PEM) for a rediss:// URL (default: system CAs)."),
    "redis_ssl_cert_file": (Path, None, "Client certificate (PEM) for Redis mutual TLS."),
    "redis_ssl_key_file": (Path, None, "Client private key (PEM) for Redis mutual TLS."),
    "redis_ssl_check_hostname": (bool, True, "Check the Redis certificate's host name."),
}


def _strip(name: str) -> str:
    for prefix in ("kafka_sasl_", "kafka_ssl_", "kafka_security_", "redis_ssl_", "redis_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _build(cls, options: dict, values: dict) -> Any:
    kw = {_strip(n): values[n] for n in options}
    known = {f.name for f in fields(cls)}
    assert set(kw) <= known, set(kw) - known
    return cls(**kw)


def kafka_security_from(values: dict) -> KafkaSecurity:
    return _build(KafkaSecurity, KAFKA_OPTIONS, values)


def redis_security_from(values: dict) -> RedisSecurity:
    return _build(RedisSecurity, REDIS_OPTIONS, values)


def redis_security_from_env(environ: dict[str, str] | None = None) -> RedisSecurity:
    """The Redis security settings of a process started with MOBSTREAM_REDIS_* variables (e.g. the
    Streamlit server the dashboard command launches), parsed as the CLI flags would parse them."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, (kind, default, _help) in REDIS_OPTIONS.items():
        raw = environ.get(env(name))
        if raw is None or raw == "":
            values[name] = default
        elif kind is bool:
            values[name] = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            values[name] = kind(raw)
    return redis_security_from(values)


def with_security(kafka: bool = True, redis: bool = True):
    """Add the Kafka and/or Redis security flags to a typer command, which gets them back as one
    `kafka_security` / `redis_security` argument: one declaration for every command that connects."""
    groups = ([("kafka_security", KAFKA_OPTIONS, kafka_security_from)] if kafka else []) + \
             ([("redis_security", REDIS_OPTIONS, redis_security_from)] if redis else [])

    def wrap(func):
        sig = inspect.signature(func, eval_str=True)
        params = [p for p in sig.parameters.values() if p.name not in {g[0] for g in groups}]
        for _, options, _ in groups:
            params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt(default, name, help),
                                         annotation=kind if default is not None else kind | None)
                       for name, (kind, default, help) in options.items()]

        @functools.wraps(func)
        def command(**kw: Any) -> Any:
            for arg, options, build in groups:
                kw[arg] = build({n: kw.pop(n) for n in options})
            return func(**kw)

        command.__signature__ = sig.replace(parameters=params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer must read the new signature, not the wrapped function's
        return command

    return wrap
