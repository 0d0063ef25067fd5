"""Ping decoding and validation (pure): Kafka message bytes -> columns of good pings + dead letters.

Message forms on `pings` (all JSON, UTF-8):
  single ping     {"uid": 7, "ts": 1767571200.5, "x": 12, "y": 40, "city": "A"}
                  ts may be an ISO-8601 string; "lat"/"lon" may replace "x"/"y"; city defaults to "A"
  batch           a JSON array of single-ping objects (what `mobstream replay` sends, one message per
                  partition holding only users that partition owns); one bad element is dead-lettered
                  alone, the others proceed
  columnar batch  {"cols": {"uid": [...], "ts": [...], "x": [...], "y": [...]}, "city": "A"}: the
                  same pings as columns (smaller; rows are checked exactly as single pings)
  watermark       {"watermark": ts}: advances the partition's event time without a ping (the replay
                  sends one to every partition at the end so the last slots close)
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import repeat

import numpy as np
import orjson

from models.grid import MASKED as MASKED_CELL, GridSpec
from stream import deadletter as dl
from stream.columnar import Rows, fast_columns
from stream.deadletter import DeadLetter

MIN_TS = 946_684_800.0  # 2000-01-01: older event times are taken as broken clocks
MAX_TS = 4_102_444_800.0  # 2100-01-01
MAX_UID_CHARS = 128
MAX_CITY_CHARS = 32
WATERMARK = -1  # cell value of a watermark marker in the decoded columns


@dataclass(frozen=True)
class Limits:
    """What a valid ping looks like: the grid, the event-time range and the largest message."""

    grid: GridSpec = field(default_factory=GridSpec)
    max_bytes: int = 1_048_576
    min_ts: float = MIN_TS
    max_ts: float = MAX_TS
    default_city: str = "A"
    # A ping (or watermark) further than this ahead of the wall clock comes from a broken device clock:
    # accepted, it would move its partition's watermark on and make every later ping late. 0 = no check.
    max_future: float = 86_400.0
    now: Callable[[], float] = time.time

    def at_now(self) -> Limits:
        """These limits with max_ts lowered to wall clock + max_future (evaluated once per decode call)."""
        if self.max_future <= 0:
            return self
        return replace(self, max_ts=min(self.max_ts, self.now() + self.max_future), max_future=0.0)


@dataclass
class Decoded:
    """Good pings of some messages in arrival order, as columns, plus the dead letters among them.

    A watermark marker is a row with cell == WATERMARK (it moves event time, it is not a ping).
    `raw[i]` is what a dead letter for row i would carry (the message bytes, or the batch element).
    """

    uid: list[str]
    city: list[str]
    ts: np.ndarray  # (N,) float64 epoch seconds
    cell: np.ndarray  # (N,) int64 dense cell id, WATERMARK for markers
    raw: Sequence
    keys: list
    dead: list[DeadLetter]

    def __len__(self) -> int:
        return len(self.uid)


class _Bad(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail


def _ts(v, limits: Limits) -> float:
    t = type(v)
    if t is int or t is float:
        ts = float(v)
    elif t is str:
        try:
            when = dt.datetime.fromisoformat(v)
        except ValueError:
            raise _Bad(dl.BAD_TIMESTAMP, f"field 'ts' {v[:40]!r} is not an ISO-8601 time") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        ts = when.timestamp()
    else:
        raise _Bad(dl.WRONG_TYPE, f"field 'ts' is {t.__name__}, expected a number or ISO-8601 string")
    if not math.isfinite(ts):
        raise _Bad(dl.NAN, "field 'ts' is not finite")
    if not limits.min_ts <= ts < limits.max_ts:
        raise _Bad(dl.BAD_TIMESTAMP, f"field 'ts' {ts:.0f} lies outside [{limits.min_ts:.0f}, {limits.max_ts:.0f}) "
                                     f"(the upper bound: 2100, or wall clock + max_future, MOBSTREAM_MAX_FUTURE)")
    return ts


def _uid(v) -> str:
    t = type(v)
    if t is int:
        return str(v)
    if t is str and 0 < len(v) <= MAX_UID_CHARS:
        return v
    if t is str:
        raise _Bad(dl.WRONG_TYPE, f"field 'uid' must be 1..{MAX_UID_CHARS} characters")
    raise _Bad(dl.WRONG_TYPE, f"field 'uid' is {t.__name__}, expected int or str")


def _int_cell(x, y, size: int) -> int:
    if type(x) is not int or type(y) is not int:
        bad = "x" if type(x) is not int else "y"
        if type(x if bad == "x" else y) is float and not math.isfinite(x if bad == "x" else y):
            raise _Bad(dl.NAN, f"field {bad!r} is not finite")
        raise _Bad(dl.WRONG_TYPE, f"field {bad!r} is {type(x if bad == 'x' else y).__name__}, expected int")
    if x == MASKED_CELL and y == MASKED_CELL:
        raise _Bad(dl.MASKED, "cell (999, 999) is a masked record, not a location")
    if not (1 <= x <= size and 1 <= y <= size):
        raise _Bad(dl.OUT_OF_GRID, f"cell ({x}, {y}) lies outside the {size}x{size} grid")
    return (y - 1) * size + (x - 1)


def _latlon(obj: dict) -> tuple[float, float]:
    lat, lon = obj.get("lat"), obj.get("lon")
    if lat is None or lon is None:
        missing = [k for k in ("x", "y") if k not in obj] if ("x" in obj or "y" in obj) else ["x/y or lat/lon"]
        raise _Bad(dl.MISSING_FIELD, f"missing field {missing[0]!r}")
    for name, v in (("lat", lat), ("lon", lon)):
        if type(v) not in (int, float):
            raise _Bad(dl.WRONG_TYPE, f"field {name!r} is {type(v).__name__}, expected a number")
        if not math.isfinite(v):
            raise _Bad(dl.NAN, f"field {name!r} is not finite")
    return float(lat), float(lon)


def check(obj, limits: Limits):
    """One ping object -> (uid, city, ts, cell or None, latlon or None); raises _Bad with the reason."""
    if type(obj) is dict:  # fast path: a well-formed x/y ping costs a few comparisons, no calls
        uid, ts, x, y = obj.get("uid"), obj.get("ts"), obj.get("x"), obj.get("y")
        tu, tt, size = type(uid), type(ts), limits.grid.size
        if ((tu is int or (tu is str and 0 < len(uid) <= MAX_UID_CHARS)) and (tt is int or tt is float)
                and type(x) is int and type(y) is int and limits.min_ts <= ts < limits.max_ts
                and 0 < x <= size and 0 < y <= size):
            city = obj.get("city", limits.default_city)
            if city is limits.default_city or (type(city) is str and 0 < len(city) <= MAX_CITY_CHARS
                                               and city.isalnum()):
                return str(uid) if tu is int else uid, city, float(ts), (y - 1) * size + (x - 1), None
    return _check_slow(obj, limits)


def _check_slow(obj, limits: Limits):
    if type(obj) is not dict:
        raise _Bad(dl.NOT_OBJECT, f"a ping must be a JSON object, got {type(obj).__name__}")
    uid = obj.get("uid")
    if uid is None:
        raise _Bad(dl.MISSING_FIELD, "missing field 'uid'")
    uid = _uid(uid)
    ts = obj.get("ts")
    if ts is None:
        raise _Bad(dl.MISSING_FIELD, "missing field 'ts'")
    ts = _ts(ts, limits)
    city = obj.get("city", limits.default_city)
    if type(city) is not str or not 0 < len(city) <= MAX_CITY_CHARS or not city.isalnum():
        raise _Bad(dl.WRONG_TYPE, f"field 'city' must be 1..{MAX_CITY_CHARS} letters or digits")
    x, y = obj.get("x"), obj.get("y")
    if x is None and y is None:
        return uid, city, ts, None, _latlon(obj)
    if x is None or y is None:
        raise _Bad(dl.MISSING_FIELD, f"missing field {'x' if x is None else 'y'!r}")
    return uid, city, ts, _int_cell(x, y, limits.grid.size), None


def _loads(value: bytes):
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        pass
    try:  # the standard library reads NaN/Infinity literals, so such pings get the reason `nan`
        obj = json.loads(value, parse_int=_json_int)
        # It also reads lone surrogates ("\ud800"), which no UTF-8 client (Redis) can take: refuse them here.
        json.dumps(obj, ensure_ascii=False).encode()
        return obj
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        raise _Bad(dl.NOT_JSON, "value is not UTF-8 JSON") from None


def _json_int(text: str):
    """An integer as orjson reads it: beyond 64 bits a float (inf past the float range, so `nan`, not a crash)."""
    n = int(text)
    return n if -(2**63) <= n < 2**64 else float(text)


def _columns(obj: dict, limits: Limits) -> list[dict]:
    """The columnar batch form {"cols": {"uid": [..], "ts": [..], "x": [..], "y": [..]}, "city": "A"}
    as ping objects (a column of the wrong length or type makes every row a dead letter)."""
    cols, city = obj.get("cols"), obj.get("city")
    if type(cols) is not dict or not cols or any(type(v) is not list for v in cols.values()):
        raise _Bad(dl.WRONG_TYPE, "field 'cols' must map column names to equal-length lists")
    n = {len(v) for v in cols.values()}
    if len(n) != 1:
        raise _Bad(dl.WRONG_TYPE, "columns of 'cols' have different lengths")
    names = list(cols)
    extra = {} if city is None else {"city": city}
    return [dict(zip(names, row), **extra) for row in zip(*cols.values())]


def _element_bytes(obj) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, default=str).encode()


def decode(messages: list[tuple[bytes | None, bytes]], limits: Limits) -> Decoded:
    """Decode (key, value) messages of one partition, in order, into good-ping columns and dead letters."""
    limits = limits.at_now()
    uids: list[str] = []
    cities: list[str] = []
    tss: list[float] = []
    cells: list = []
    raws = Rows()
    keys: list = []
    dead: list[DeadLetter] = []
    latlon_rows: list[tuple[int, float, float]] = []

    def add(obj, raw, key) -> None:
        uid, city, ts, cell, ll = check(obj, limits)
        if ll is not None:
            latlon_rows.append((len(uids), ll[0], ll[1]))
        uids.append(uid)
        cities.append(city)
        tss.append(ts)
        cells.append(cell)
        raws.append(raw)
        keys.append(key)

    for msg in messages:
        key, value = msg[0], msg[1]
        if value is None or len(value) > limits.max_bytes:
            size = 0 if value is None else len(value)
            dead.append(DeadLetter(dl.OVERSIZE if size else dl.NOT_JSON,
                                   f"message of {size} bytes (limit {limits.max_bytes})",
                                   (value or b"")[: limits.max_bytes], key))
            continue
        try:
            obj = _loads(value)
            if type(obj) is list:
                for elem in obj:
                    try:
                        add(elem, elem, key)
                    except _Bad as bad:
                        dead.append(DeadLetter(bad.reason, bad.detail, _element_bytes(elem), key))
            elif type(obj) is dict and "cols" in obj:
                fast = fast_columns(obj["cols"], obj.get("city"), limits, MAX_UID_CHARS, MAX_CITY_CHARS)
                if fast is not None:
                    uid, city, ts, cell = fast
                    uids += uid
                    cities += repeat(city, len(uid))
                    tss += ts.tolist()
                    cells += cell.tolist()
                    raws.extend_columns(obj["cols"], obj.get("city"), len(uid))
                    keys += repeat(key, len(uid))
                    continue
                for elem in _columns(obj, limits):
                    try:
                        add(elem, elem, key)
                    except _Bad as bad:
                        dead.append(DeadLetter(bad.reason, bad.detail, _element_bytes(elem), key))
            elif type(obj) is dict and "watermark" in obj and "uid" not in obj:
                ts = _ts(obj["watermark"], limits)
                uids.append(""), cities.append(""), tss.append(ts), cells.append(WATERMARK)
                raws.append(value), keys.append(key)
            else:
                add(obj, value, key)
        except _Bad as bad:
            dead.append(DeadLetter(bad.reason, bad.detail, value, key))
    keep = _resolve_latlon(latlon_rows, cells, raws, keys, dead, limits.grid)
    if keep is not None:
        uids = [u for u, k in zip(uids, keep) if k]
        cities = [c for c, k in zip(cities, keep) if k]
        tss = [t for t, k in zip(tss, keep) if k]
        cells = [c for c, k in zip(cells, keep) if k]
        raws = [r for r, k in zip(raws, keep) if k]
        keys = [r for r, k in zip(keys, keep) if k]
    return Decoded(uids, cities, np.asarray(tss, dtype=np.float64), np.asarray(cells, dtype=np.int64), raws, keys, dead)


def _resolve_latlon(rows, cells, raws, keys, dead, grid: GridSpec):
    """Map lat/lon rows to cells in one vectorised call; returns a keep-mask when some fall outside."""
    if not rows:
        return None
    idx = np.array([r[0] for r in rows])
    x, y, ok = grid.to_cells([r[1] for r in rows], [r[2] for r in rows])
    cid = (y - 1) * grid.size + (x - 1)
    keep = None
    for i, good, c, (_, lat, lon) in zip(idx.tolist(), ok.tolist(), cid.tolist(), rows):
        if good:
            cells[i] = c
            continue
        keep = keep or [True] * len(cells)
        keep[i] = False
        raw = raws[i] if isinstance(raws[i], bytes) else _element_bytes(raws[i])
        dead.append(DeadLetter(dl.OUT_OF_GRID, f"lat/lon ({lat}, {lon}) lies outside the grid", raw, keys[i]))
    return keep


def raw_bytes(raw) -> bytes:
    """The bytes a dead letter carries for a decoded row (batch elements are re-encoded)."""
    return raw if isinstance(raw, bytes) else _element_bytes(raw)

