"""Ping decoding (pure): Kafka messages -> columns of good pings + dead letters, whatever the message form.

Message forms on `pings` (all JSON, UTF-8):
  single ping     {"uid": 7, "ts": 1767571200.5, "x": 12, "y": 40, "city": "A"}
                  ts may be an ISO-8601 string; "lat"/"lon" may replace "x"/"y"; city defaults to "A"
  batch           a JSON array of single-ping objects (one bad element is dead-lettered alone)
  columnar batch  {"cols": {"uid": [...], "ts": [...], "x": [...], "y": [...]}, "city": "A"}: the
                  same pings as columns (what `mobstream replay` sends)
  watermark       {"watermark": ts}: advances the partition's event time without a ping

Every form is flattened into one set of columns, and `stream.ping_rules` checks them all at once:
the rules exist once, for every form.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import orjson

from models.grid import GridSpec
from stream import deadletter as dl
from stream import ping_rules as rules
from stream.deadletter import DeadLetter

MIN_TS = 946_684_800.0  # 2000-01-01: older event times are taken as broken clocks
MAX_TS = 4_102_444_800.0  # 2100-01-01
WATERMARK = -1  # cell value of a watermark marker in the decoded columns
FIELDS = ("uid", "ts", "x", "y", "lat", "lon", "city")


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
    # A ping without "ts" takes its Kafka record's timestamp (messages given as (key, value, timestamp ms)).
    ts_from_kafka: bool = False

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


class _NotJson(Exception):
    pass


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
        raise _NotJson from None


def _json_int(text: str):
    """An integer as orjson reads it: beyond 64 bits a float (inf past the float range, so `nan`, not a crash)."""
    n = int(text)
    return n if -(2**63) <= n < 2**64 else float(text)


def _element_bytes(obj) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, default=str).encode()


def raw_bytes(raw) -> bytes:
    """The bytes a dead letter carries for a decoded row (batch elements are re-encoded)."""
    return raw if isinstance(raw, bytes) else _element_bytes(raw)


class _Raw(Sequence):
    """raw[i] for kept rows, built only when asked (a late ping): the message bytes, or its element."""

    def __init__(self, values: list, parts: dict, msg: list[int], elem: list[int]) -> None:
        self.values, self.parts, self.msg, self.elem = values, parts, msg, elem

    def __len__(self) -> int:
        return len(self.msg)

    def __getitem__(self, i: int):
        m, j = self.msg[i], self.elem[i]
        part = self.parts.get(m)
        if part is None:
            return self.values[m]
        if type(part) is list:
            return part[j]
        cols, city = part  # a columnar message: row j rebuilt as a ping object
        row = {name: col[j] for name, col in cols.items()}
        if city is not None:
            row["city"] = city
        return row


class _Frame:
    """Rows of a decode call as columns, in arrival order, plus the dead letters of whole messages."""

    def __init__(self) -> None:
        self.cols = {f: [] for f in FIELDS}
        self.rows: list[dict] = []  # ping objects not yet moved into cols
        self.msg: list[int] = []  # per row: its message's index
        self.elem: list[int] = []  # per row: its element's index in the message
        self.parts: dict[int, object] = {}  # message index -> its element list / (cols, city)
        self.marks: list[int] = []  # rows that are watermarks
        self.dead: list[tuple[int, DeadLetter]] = []  # (rows before it, dead letter) for whole messages

    def __len__(self) -> int:
        return len(self.msg)

    def flush(self) -> None:
        if self.rows:
            for f in FIELDS:
                self.cols[f] += rules.column(self.rows, f)
            self.rows = []

    def columns(self, m: int, cols: dict, city) -> None:
        self.flush()
        n = len(next(iter(cols.values())))
        for f in FIELDS:
            self.cols[f] += cols.get(f) or [None] * n if f != "city" or city is None else [city] * n
        self.msg += [m] * n
        self.elem += range(n)

    def refuse(self, reason: str, detail: str, value: bytes, key) -> None:
        self.dead.append((len(self), DeadLetter(reason, detail, value, key)))


def _message(fr: _Frame, m: int, key, value, limits: Limits) -> None:
    """Add message m's pings to the frame (or its dead letter)."""
    if value is None or len(value) > limits.max_bytes:
        size = 0 if value is None else len(value)
        return fr.refuse(dl.OVERSIZE if size else dl.NOT_JSON, f"message of {size} bytes (limit {limits.max_bytes})",
                         (value or b"")[: limits.max_bytes], key)
    try:
        obj = _loads(value)
    except _NotJson:
        return fr.refuse(dl.NOT_JSON, "value is not UTF-8 JSON", value, key)
    t = type(obj)
    if t is dict and "cols" not in obj and ("uid" in obj or "watermark" not in obj):  # a single ping
        fr.rows.append(obj)
        fr.msg.append(m)
        fr.elem.append(0)
    elif t is list:
        fr.parts[m] = obj
        for j, elem in enumerate(obj):
            if type(elem) is dict:
                fr.rows.append(elem)
                fr.msg.append(m)
                fr.elem.append(j)
            else:
                fr.refuse(dl.NOT_OBJECT, f"a ping must be a JSON object, got {type(elem).__name__}",
                          _element_bytes(elem), key)
    elif t is dict and "cols" in obj:
        cols, city = obj["cols"], obj.get("city")
        if type(cols) is not dict or not cols or any(type(c) is not list for c in cols.values()):
            return fr.refuse(dl.WRONG_TYPE, "field 'cols' must map column names to equal-length lists", value, key)
        if len({len(c) for c in cols.values()}) != 1:
            return fr.refuse(dl.WRONG_TYPE, "columns of 'cols' have different lengths", value, key)
        fr.parts[m] = (cols, city)
        fr.columns(m, cols, city)
    elif t is dict:  # a watermark: a row that only moves event time (its ts is checked like a ping's)
        fr.marks.append(len(fr))
        fr.rows.append({"uid": "", "ts": obj["watermark"], "x": 1, "y": 1})
        fr.msg.append(m)
        fr.elem.append(0)
    else:
        fr.refuse(dl.NOT_OBJECT, f"a ping must be a JSON object, got {t.__name__}", value, key)


def decode(messages: Sequence[tuple], limits: Limits) -> Decoded:
    """Decode the messages of one partition, in order, into good-ping columns and dead letters.

    A message is (key, value) or (key, value, Kafka timestamp in ms); the timestamp is read only
    with `limits.ts_from_kafka`, as the ping time of a ping without "ts"."""
    limits = limits.at_now()
    fr = _Frame()
    keys, values = [m[0] for m in messages], [m[1] for m in messages]
    for m, (key, value) in enumerate(zip(keys, values)):
        _message(fr, m, key, value, limits)
    fr.flush()
    c = fr.cols
    v = rules.Verdicts(len(fr))
    for i in fr.marks:  # a watermark has no uid of its own ("" marks it)
        c["uid"][i] = 0
    kafka = None
    if limits.ts_from_kafka:
        stamps = [m[2] / 1000.0 if len(m) > 2 and m[2] is not None and m[2] >= 0 else None for m in messages]
        kafka = [None if i in fr.marks else stamps[m] for i, m in enumerate(fr.msg)]
    uid = rules.uids(c["uid"], v)
    ts = rules.times(c["ts"], kafka, limits.min_ts, limits.max_ts, v)
    city = rules.cities(c["city"], limits.default_city, v)
    cell = rules.cells(c["x"], c["y"], c["lat"], c["lon"], limits.grid, v)
    for i in fr.marks:
        uid[i], city[i], cell[i] = "", "", WATERMARK
    raw = _Raw(values, fr.parts, fr.msg, fr.elem)
    dead = _dead_letters(fr, v, raw, keys)
    if v.dead:
        keep = np.flatnonzero(v.alive)
        kl = keep.tolist()
        uid, city, ts, cell = [uid[i] for i in kl], [city[i] for i in kl], ts[keep], cell[keep]
        raw = _Raw(values, fr.parts, [fr.msg[i] for i in kl], [fr.elem[i] for i in kl])
    return Decoded(uid, city, ts, cell, raw, list(map(keys.__getitem__, raw.msg)), dead)


def _dead_letters(fr: _Frame, v: rules.Verdicts, raw: _Raw, keys: list) -> list[DeadLetter]:
    """Whole-message and per-row dead letters, in arrival order."""
    rows = [(i, DeadLetter(reason, detail, raw_bytes(raw[i]), keys[fr.msg[i]])) for i, (reason, detail) in v.dead.items()]
    if not fr.dead:
        return [d for _, d in sorted(rows, key=lambda r: r[0])]
    order = [(p, 0, k, d) for k, (p, d) in enumerate(fr.dead)] + [(i, 1, 0, d) for i, d in rows]
    return [d for *_, d in sorted(order, key=lambda r: r[:3])]
