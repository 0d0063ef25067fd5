"""The dataset formats (YJMob/HuMob records, POI counts, raw GPS) and their vectorised row checks.

A check is (field, reason, mask of rows at fault, message template); templates are filled only
for the rows reported, so a clean chunk costs a few numpy comparisons per column.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.grid import MASKED, GridSpec
from models.slots import SLOTS_PER_DAY, slots_of
from training.readers.schema import Field

POI_CATEGORIES = 85


@dataclass(frozen=True)
class Check:
    field: str
    reason: str
    mask: np.ndarray
    template: str  # str.format over the row's values, e.g. "t {t} is outside 0..47"


@dataclass(frozen=True)
class Context:
    grid: GridSpec
    origin: int
    cells: bool = True  # False: lat/lon outside the grid are valid rows (the online worker dead-letters them)


# A numeric timestamp this large is epoch milliseconds: as seconds it would lie after the year 5000, and
# milliseconds since 1973-03-03 are all above it.
EPOCH_MS_FROM = 1e11


def _seconds(v: np.ndarray) -> np.ndarray:
    return np.where(np.abs(v) >= EPOCH_MS_FROM, v / 1000.0, v)


@dataclass(frozen=True)
class Format:
    """A dataset format: its columns (header names), header aliases, and its row checks."""

    name: str
    fields: tuple[Field, ...]
    check: Callable[[dict, Context], tuple[dict, list[Check]]]
    aliases: tuple[tuple[str, str], ...] = ()
    key: tuple[str, ...] = ()  # at most one row per key value (checked between neighbouring rows)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def canonical(self, header: list[str]) -> list[str]:
        alias = dict(self.aliases)
        return [alias.get(c, c) for c in header]

    def matches(self, header: list[str]) -> bool:
        h = self.canonical(header)
        return len(h) == len(self.fields) and set(h) == set(self.columns)


def _outside(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    # one subtraction and one unsigned comparison instead of two comparisons and an or
    return (v - lo).view(np.uint64) > (hi - lo)


def _check_yjmob(cols: dict, ctx: Context) -> tuple[dict, list[Check]]:
    uid, d, t, x, y = (cols[k] for k in ("uid", "d", "t", "x", "y"))
    n = ctx.grid.size
    masked = (x == MASKED) & (y == MASKED)
    masked_note = "only x=y=999 marks a masked record"
    checks = [
        Check("uid", "out_of_range", uid < 0, "{uid} is negative"),
        Check("d", "out_of_range", d < 0, "{d} is negative"),
        Check("t", "out_of_range", _outside(t, 0, SLOTS_PER_DAY - 1), f"{{t}} is outside 0..{SLOTS_PER_DAY - 1}"),
        Check("x", "out_of_range", _outside(x, 1, n) & ~masked, f"{{x}} is outside 1..{n} (y is {{y}}; {masked_note})"),
        Check("y", "out_of_range", _outside(y, 1, n) & ~masked, f"{{y}} is outside 1..{n} (x is {{x}}; {masked_note})"),
    ]
    return {"uid": uid, "d": d, "t": t, "x": x, "y": y, "masked": masked}, checks


def _check_poi(cols: dict, ctx: Context) -> tuple[dict, list[Check]]:
    x, y, cat, count = (cols[k] for k in ("x", "y", "category", "poi_count"))
    n = ctx.grid.size
    checks = [
        Check("x", "out_of_range", _outside(x, 1, n), f"{{x}} is outside 1..{n}"),
        Check("y", "out_of_range", _outside(y, 1, n), f"{{y}} is outside 1..{n}"),
        Check("category", "out_of_range", _outside(cat, 1, POI_CATEGORIES), f"{{category}} is outside 1..{POI_CATEGORIES}"),
        Check("poi_count", "out_of_range", count < 0, "{poi_count} is negative"),
    ]
    return {"x": x, "y": y, "category": cat, "poi_count": count}, checks


def epoch_seconds(ts: pa.Array) -> np.ndarray:
    """Epoch seconds of timestamps given as numbers (epoch seconds, or milliseconds from EPOCH_MS_FROM on) or
    ISO-8601 text (with or without a zone, fractional seconds allowed; no zone = UTC); NaN where neither."""
    for to in (pa.float64(), pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        try:
            v = pc.cast(ts, to)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        if to == pa.float64():
            return _seconds(v.to_numpy(zero_copy_only=False))
        return v.cast(pa.int64()).to_numpy(zero_copy_only=False) / 1e6
    return np.array([_one_epoch(s) for s in ts.to_pylist()], dtype=np.float64)  # mixed forms: rare


def _one_epoch(s: str | None) -> float:
    if s is None:
        return np.nan
    try:
        return float(_seconds(np.float64(s)))
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(s.strip())
    except ValueError:
        return np.nan
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_gps(cols: dict, ctx: Context) -> tuple[dict, list[Check]]:
    uid, lat, lon = cols["uid"], cols["lat"], cols["lon"]
    ts = epoch_seconds(cols["timestamp"])
    x, y, ok = ctx.grid.to_cells(lat, lon)
    finite = np.isfinite(lat) & np.isfinite(lon)
    good_ts = np.isfinite(ts)
    slot = np.where(good_ts, slots_of(np.where(good_ts, ts, ctx.origin), ctx.origin), 0)
    g = ctx.grid
    checks = [
        Check("uid", "out_of_range", uid < 0, "{uid} is negative"),
        Check("timestamp", "bad_timestamp", ~good_ts, "{timestamp!r} is neither epoch seconds nor ISO-8601"),
        Check("timestamp", "before_origin", slot < 0, f"{{timestamp!r}} is before the time origin {_iso(ctx.origin)}"),
        Check("lat,lon", "not_finite", ~finite, "({lat}, {lon}) is not finite"),
        Check(
            "lat,lon",
            "outside_grid",
            ~ok & finite & ctx.cells,
            f"({{lat}}, {{lon}}) lies outside the {g.size}x{g.size} grid of {g.cell_m:g} m cells "
            f"whose south-west corner is ({g.origin_lat}, {g.origin_lon})",
        ),
    ]
    out = {
        "uid": uid,
        "ts": ts,
        "lat": lat,
        "lon": lon,
        "x": x,
        "y": y,
        "slot": slot,
        "d": slot // SLOTS_PER_DAY,
        "t": slot % SLOTS_PER_DAY,
    }
    return out, checks


YJMOB = Format(
    "yjmob",
    (Field("uid", "int"), Field("d", "int"), Field("t", "int"), Field("x", "int"), Field("y", "int")),
    _check_yjmob,
    key=("uid", "d", "t"),
)
POI = Format(
    "poi",
    (Field("x", "int"), Field("y", "int"), Field("category", "int"), Field("poi_count", "int")),
    _check_poi,
    aliases=(("poicategory", "category"), ("poi_category", "category")),
)
GPS = Format(
    "gps",
    (Field("uid", "int"), Field("lat", "float"), Field("lon", "float"), Field("timestamp", "str")),
    _check_gps,
    aliases=(("latitude", "lat"), ("longitude", "lon"), ("ts", "timestamp")),
)
FORMATS = {f.name: f for f in (YJMOB, POI, GPS)}
