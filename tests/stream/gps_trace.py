"""A GeoLife-shaped raw-GPS trace (uid,lat,lon,timestamp; rows by user, then time) written in any timestamp form."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from models.slots import DEFAULT_ORIGIN

# Each form writes the same instants (whole milliseconds, so every form is exact).
FORMS = {
    "iso_z": lambda t: _utc(t).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    "iso_naive": lambda t: _utc(t).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
    "iso_offset": lambda t: _utc(t).astimezone(dt.timezone(dt.timedelta(hours=9))).isoformat(timespec="milliseconds"),
    "epoch_s": lambda t: f"{t:.3f}",
    "epoch_ms": lambda t: str(int(round(t * 1000))),
}


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(round(t * 1000) / 1000, dt.timezone.utc)


def trace(n_users: int = 30, day: int = 0, seed: int = 7, origin: int = DEFAULT_ORIGIN) -> pd.DataFrame:
    """Trips of random walkers around central Tokyo on one day: a point every 5-300 s while moving, long
    gaps while not; user 0 drives north out of the default grid (35.30-36.20 N) in the afternoon."""
    rng = np.random.default_rng(seed + day)
    rows = []
    for uid in range(n_users):
        lat, lon = 35.68 + rng.normal(0, 0.08), 139.75 + rng.normal(0, 0.1)
        t = origin + day * 86_400 + rng.uniform(0, 6 * 3600)
        end = origin + (day + 1) * 86_400 - 60
        while t < end:
            for _ in range(int(rng.integers(5, 60))):  # one trip
                step = 0.01 if uid == 0 and t > origin + day * 86_400 + 12 * 3600 else 0.002
                lat += rng.normal(step if uid == 0 and step > 0.002 else 0, 0.002)
                lon += rng.normal(0, 0.002)
                rows.append((uid, round(lat, 6), round(lon, 6), round(t, 3)))
                t += rng.uniform(5, 300)
                if t >= end:
                    break
            t += rng.exponential(3600)  # not moving
    return pd.DataFrame(rows, columns=["uid", "lat", "lon", "ts"])


def write(path: Path, df: pd.DataFrame, form: str) -> Path:
    out = pd.DataFrame({"uid": df.uid, "lat": df.lat, "lon": df.lon, "timestamp": [FORMS[form](t) for t in df.ts]})
    out.to_csv(path, index=False)
    return path
