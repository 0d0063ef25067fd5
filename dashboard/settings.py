"""The dashboard's settings: one frozen dataclass, built by `mobstream dashboard` and read back by the app.

The command cannot hand Python objects to `streamlit run`, so it exports each setting as its
MOBSTREAM_* variable and the app rebuilds the same object with `from_env()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mobstream.errors import ConfigError
from mobstream.settings import env
from models.slots import DEFAULT_ORIGIN


@dataclass(frozen=True)
class DashboardSettings:
    redis_url: str | None = None
    app: str = "mobstream"
    redis_cluster: bool = False
    refresh: float = 3.0
    port: int = 8501
    metrics_urls: tuple[str, ...] = ()
    grid_origin_lat: float | None = None
    grid_origin_lon: float | None = None
    labels: Path | None = None
    pca: Path | None = None
    history_slots: int = 48
    max_users: int = 5000
    origin: int = DEFAULT_ORIGIN

    def __post_init__(self) -> None:
        checks = [
            (self.refresh >= 0.5, "refresh", "must be >= 0.5 seconds"),
            (1 <= self.port <= 65535, "port", "must be a TCP port"),
            (self.history_slots >= 2, "history_slots", "must be >= 2"),
            (self.max_users >= 1, "max_users", "must be >= 1"),
            ((self.grid_origin_lat is None) == (self.grid_origin_lon is None), "grid_origin_lat",
             "and grid_origin_lon go together"),
        ]
        for ok, name, why in checks:
            if not ok:
                raise ConfigError(f"setting {name} ({env(name)}) = {getattr(self, name)!r} {why}")

    @property
    def has_origin(self) -> bool:
        return self.grid_origin_lat is not None

    def to_env(self) -> dict[str, str]:
        """The MOBSTREAM_* variables that make `from_env()` rebuild these settings."""
        out = {}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            if v is None:
                continue
            out[env(name)] = ",".join(v) if isinstance(v, tuple) else str(v)
        return out

    @classmethod
    def from_env(cls, environ=None) -> "DashboardSettings":
        e = os.environ if environ is None else environ

        def get(name, cast, default):
            raw = e.get(env(name), "").strip()
            if not raw:
                return default
            try:
                return cast(raw)
            except ValueError as exc:
                raise ConfigError(f"setting {name} ({env(name)}) = {raw!r}: {exc}") from exc

        return cls(
            redis_url=get("redis_url", str, None), app=get("app", str, "mobstream"),
            redis_cluster=get("redis_cluster", lambda v: v.lower() in ("1", "true", "yes", "on"), False),
            refresh=get("refresh", float, 3.0), port=get("port", int, 8501),
            metrics_urls=get("metrics_urls", split_urls, ()),
            grid_origin_lat=get("grid_origin_lat", float, None), grid_origin_lon=get("grid_origin_lon", float, None),
            labels=get("labels", Path, None), pca=get("pca", Path, None),
            history_slots=get("history_slots", int, 48),
            max_users=get("max_users", int, 5000), origin=get("origin", int, DEFAULT_ORIGIN),
        )


def split_urls(raw: str | None) -> tuple[str, ...]:
    """"a, b c" -> ("a", "b", "c"): the metrics URLs, separated by commas or spaces."""
    return tuple(u for u in (raw or "").replace(",", " ").split() if u)
