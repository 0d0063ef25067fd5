"""Fuzzed bad input through the decode path: hostile, malformed and edge-case pings mixed with valid ones.

Every generated message carries its verdict (the pings it must yield, or the dead-letter reason of
each bad one), so the property is exact: decode never raises, every bad ping is a dead letter with
the expected reason, every valid ping comes out once, in order, with its uid, city, time and cell.

The case makers take a `Draw` (hypothesis's draws here, a seeded random.Random in the integration
test tests/integration/test_reliability_fuzz.py), so both levels fuzz with the same cases.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass, field

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from models.grid import GridSpec
from stream import deadletter as dl
from stream.pings import MAX_TS, MIN_TS, WATERMARK, Limits, decode

MAX_BYTES = 4096  # small, so oversize messages stay cheap to build
LIMITS = Limits(max_bytes=MAX_BYTES, max_future=0)  # the static range; the wall-clock bound has its own test
GRID = GridSpec()
UID_CHARS = "aZ9_-. é中😀\x00\"\\/|:\n\t"
CITIES = (None, "A", "B", "cityC", "Z9")
JUNK = (None, True, False, 0, -1, 1.5, "", "x" * 300, [], {}, [[[]]], {"a": {"b": [1, {"c": None}]}})


class Draw:
    """What case makers need from a source of randomness."""

    def __init__(self, pick, ts_range: tuple[int, int] = (int(MIN_TS), int(MAX_TS) - 2)) -> None:
        self.pick = pick  # pick(kind, lo, hi) -> value; kind "int", "float" or "text"
        self.ts_range = ts_range  # valid pings' event times (the integration test keeps them in a few slots)

    def int(self, lo: int, hi: int) -> int:
        return self.pick("int", lo, hi)

    def float(self, lo: float, hi: float) -> float:
        return self.pick("float", lo, hi)

    def choice(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def text(self, lo: int, hi: int) -> str:
        return self.pick("text", lo, hi)


def hypothesis_draw(data) -> Draw:
    def pick(kind, lo, hi):
        if kind == "int":
            return data.draw(st.integers(lo, hi))
        if kind == "text":
            return data.draw(st.text(UID_CHARS, min_size=lo, max_size=hi))
        return data.draw(st.floats(lo, hi, allow_nan=False, exclude_max=True))
    return Draw(pick)


def random_draw(rng: random.Random, **kw) -> Draw:
    def pick(kind, lo, hi):
        if kind == "int":
            return rng.randint(lo, hi)
        if kind == "text":
            return "".join(rng.choices(UID_CHARS, k=rng.randint(lo, hi)))
        return rng.uniform(lo, hi - 1e-3)
    return Draw(pick, **kw)


@dataclass
class Case:
    """One message and what decoding it must give: the good pings (uid, city, ts, cell) and dead reasons."""

    value: bytes | None
    good: list = field(default_factory=list)
    dead: list = field(default_factory=list)
    marks: int = 0  # watermark markers it yields


def valid(d: Draw):
    """A valid ping object and the (uid, city, ts, cell) it decodes to."""
    uid = d.int(-2**53, 2**53) if d.int(0, 1) else d.text(1, 128)
    ts_int = d.int(*d.ts_range)
    form = d.int(0, 3)
    if form == 0:
        ts = ts_int
    elif form == 1:
        ts = d.float(d.ts_range[0], d.ts_range[1] + 1)
    else:  # ISO-8601: naive (= UTC) or with an offset
        tz = dt.timezone(dt.timedelta(minutes=d.int(-720, 840))) if form == 3 else dt.timezone.utc
        when = dt.datetime.fromtimestamp(ts_int, tz)
        ts = when.isoformat() if form == 3 else when.replace(tzinfo=None).isoformat()
    x, y = d.int(1, 200), d.int(1, 200)
    obj = {"uid": uid, "ts": ts}
    if d.int(0, 5) == 0:
        lat, lon = GRID.cell_center(x, y)
        obj.update(lat=float(lat), lon=float(lon))
        if d.int(0, 3) == 0:  # both pairs, naming the same cell: accepted
            obj.update(x=x, y=y)
    else:
        obj.update(x=x, y=y)
    city = d.choice(CITIES)
    if city is not None:
        obj["city"] = city
    if d.int(0, 9) == 0:
        obj["extra"] = d.choice(JUNK)  # unknown fields are ignored, however odd
    want_ts = float(ts) if not isinstance(ts, str) else float(ts_int)
    return obj, (str(uid), city or "A", want_ts, (y - 1) * 200 + (x - 1))


def _set(obj, k, v):
    return {**obj, k: v}


def _drop(obj, *ks):
    return {k: v for k, v in obj.items() if k not in ks}


def _cell_key(obj):
    return "x" if "x" in obj else "lat"


# Mutations of a valid ping with one thing wrong, and the reason it must be refused with.
MUTATIONS = [
    (dl.MISSING_FIELD, lambda d, o: _drop(o, "uid")),
    (dl.MISSING_FIELD, lambda d, o: _drop(o, "ts")),
    (dl.MISSING_FIELD, lambda d, o: _drop(o, "x", "lat")),
    (dl.MISSING_FIELD, lambda d, o: _drop(o, "x", "y", "lat", "lon")),
    (dl.MISSING_FIELD, lambda d, o: _set(o, "uid", None)),
    (dl.WRONG_TYPE, lambda d, o: _set(o, "uid", d.choice([True, False, 1.5, [], {}, [1], {"a": 1}, ""]))),
    (dl.WRONG_TYPE, lambda d, o: _set(o, "uid", "u" * d.int(129, 5000))),
    (dl.WRONG_TYPE, lambda d, o: _set(o, "ts", d.choice([True, [], {}, [1767571200], {"t": 1}]))),
    (dl.BAD_TIMESTAMP, lambda d, o: _set(o, "ts", d.choice(["", "yesterday", "2026-13-01", "9" * 2000, "2026-01-05T25:00"]))),
    (dl.BAD_TIMESTAMP, lambda d, o: _set(o, "ts", d.choice([0, -1, int(MIN_TS) - 1, -1e12, 1e300, -1e300, int(MAX_TS), 2**62,
                                                           "1970-01-01T00:00:00", "2100-01-01T00:00:00Z", "9999-12-31T23:59:59"]))),
    (dl.BAD_TIMESTAMP, lambda d, o: _set(o, "ts", d.float(-1e15, MIN_TS - 1) if d.int(0, 1) else d.float(MAX_TS, 1e15))),
    (dl.WRONG_TYPE, lambda d, o: _set(o, "city", d.choice([1, "", "a b", "c" * 33, [], {}, "A;DROP", True]))),
    (dl.WRONG_TYPE, lambda d, o: {**_drop(o, "lat", "lon"), "x": d.choice([1.0, 3.5, "3", True, [3], {}]), "y": 4}),
    (dl.WRONG_TYPE, lambda d, o: {**_drop(o, "lat", "lon"), "x": 4, "y": d.choice([2.0, "4", False, [None]])}),
    (dl.OUT_OF_GRID, lambda d, o: {**_drop(o, "lat", "lon"), "x": d.choice([0, -1, 201, 999, 10**12, -10**12]), "y": d.int(1, 200)}),
    (dl.OUT_OF_GRID, lambda d, o: {**_drop(o, "lat", "lon"), "x": d.int(1, 200), "y": d.choice([0, 201, 999, 2**63 - 1])}),
    (dl.MASKED, lambda d, o: {**_drop(o, "lat", "lon"), "x": 999, "y": 999}),
    (dl.OUT_OF_GRID, lambda d, o: {**_drop(o, "x", "y"), "lat": d.choice([0.0, -90.0, 35.0, 36.3, 1e300]), "lon": 139.5}),
    (dl.OUT_OF_GRID, lambda d, o: {**_drop(o, "x", "y"), "lat": 35.5, "lon": d.choice([0, 139.0, 140.5, -1e300])}),
    (dl.WRONG_TYPE, lambda d, o: {**_drop(o, "x", "y"), "lat": d.choice(["35.5", True, [], {}]), "lon": 139.5}),
]
NAN_LITERALS = (b"NaN", b"Infinity", b"-Infinity")


def _conflict(d: Draw, obj: dict) -> dict:
    """x/y and lat/lon naming different cells (lat/lon in the cell east of x/y, or off the grid)."""
    x, y = d.int(1, 199), d.int(1, 200)
    lat, lon = GRID.cell_center(x + 1, y) if d.int(0, 3) else (10.0, 10.0)
    return {**_drop(obj, "x", "y", "lat", "lon"), "x": x, "y": y, "lat": float(lat), "lon": float(lon)}


MUTATIONS.append((dl.CONFLICT, _conflict))


def mutated(d: Draw):
    obj, _ = valid(d)
    reason, mutate = d.choice(MUTATIONS)
    return mutate(d, obj), reason


def element(d: Draw):
    """A batch element: (object, None, good) for a valid ping, (object, reason, None) for a bad one."""
    k = d.int(0, 9)
    if k < 5:
        obj, good = valid(d)
        return obj, None, good
    if k == 9:
        return d.choice([1, "ping", None, True, [], [1, 2], 2.5]), dl.NOT_OBJECT, None
    obj, reason = mutated(d)
    return obj, reason, None


def single(d: Draw) -> Case:
    obj, reason, good = element(d)
    if type(obj) is list:  # a top-level array is a batch: each of its elements is refused alone
        return Case(orjson.dumps(obj), dead=[dl.NOT_OBJECT] * len(obj))
    if reason is None:
        return Case(orjson.dumps(obj), good=[good])
    return Case(orjson.dumps(obj), dead=[reason])


def nan_ping(d: Draw) -> Case:
    obj, _ = valid(d)
    obj = {**_drop(obj, "lat", "lon"), "x": 5, "y": 6}
    obj[d.choice(["ts", "x", "y"])] = "__NAN__"
    return Case(orjson.dumps(obj).replace(b'"__NAN__"', d.choice(NAN_LITERALS)), dead=[dl.NAN])


def nan_latlon(d: Draw) -> Case:
    obj, _ = valid(d)
    obj = {**_drop(obj, "x", "y"), "lat": "__NAN__", "lon": 139.5}
    return Case(orjson.dumps(obj).replace(b'"__NAN__"', d.choice(NAN_LITERALS)), dead=[dl.NAN])


def not_json(d: Draw) -> Case:
    obj, _ = valid(d)
    good = orjson.dumps(obj)
    value = d.choice([b"", b"\xff\xfe\xfd", b"{", b"not json", good[: d.int(1, len(good) - 1)],
                      b'{"uid": 1, "ts": 1767571200, "x": 3, "y": 4} trailing', good.replace(b"{", b"{\xc3\x28", 1),
                      b"\x00" * d.int(1, 50), b"[1, 2,", b"{'uid': 1}"])
    return Case(value, dead=[dl.NOT_JSON])


def oversize(d: Draw) -> Case:
    obj, _ = valid(d)
    obj["pad"] = "p" * d.int(MAX_BYTES, 2 * MAX_BYTES)  # a valid ping, but too big: refused whole
    return Case(orjson.dumps(obj), dead=[dl.OVERSIZE])


TOP_LEVEL = [(b"null", dl.NOT_OBJECT), (b"true", dl.NOT_OBJECT), (b"42", dl.NOT_OBJECT), (b'"ping"', dl.NOT_OBJECT),
             (b"1e999x", dl.NOT_JSON), (b"{}", dl.MISSING_FIELD), (b'{"uid": {}}', dl.WRONG_TYPE),
             (b'{"watermark": 1767571200, "uid": 5}', dl.MISSING_FIELD)]


def top_level_junk(d: Draw) -> Case:
    value, reason = d.choice(TOP_LEVEL)
    return Case(value, dead=[reason])


def batch(d: Draw) -> Case:
    elems = [element(d) for _ in range(d.int(0, 12))]
    return Case(orjson.dumps([e[0] for e in elems]), good=[e[2] for e in elems if e[1] is None],
                dead=[e[1] for e in elems if e[1] is not None])


def columnar(d: Draw) -> Case:
    rows, good, dead = [], [], []
    city = d.choice(CITIES)
    for _ in range(d.int(1, 20)):
        obj, want = valid(d)
        obj = {"uid": obj["uid"], "ts": obj["ts"], "x": want[3] % 200 + 1, "y": want[3] // 200 + 1}
        want = (want[0], city or "A", want[2], want[3])
        kind = d.int(0, 4)
        if kind == 0:
            obj["x"], obj["y"] = 999, 999
            dead.append(dl.MASKED)
        elif kind == 1:
            obj["ts"] = d.choice([0, "never", True])
            dead.append(dl.WRONG_TYPE if obj["ts"] is True else dl.BAD_TIMESTAMP)
        else:
            good.append(want)
        rows.append(obj)
    cols = {k: [r[k] for r in rows] for k in ("uid", "ts", "x", "y")}
    msg = {"cols": cols} if city is None else {"cols": cols, "city": city}
    return Case(orjson.dumps(msg), good=good, dead=dead)


def broken_columnar(d: Draw) -> Case:
    cols = d.choice([{"uid": [1, 2], "ts": [1767571200], "x": [3], "y": [4]}, {}, {"uid": 1}, [1, 2], None])
    return Case(orjson.dumps({"cols": cols}), dead=[dl.WRONG_TYPE])


def watermark(d: Draw) -> Case:
    if d.int(0, 1):
        return Case(orjson.dumps({"watermark": d.int(*d.ts_range)}), marks=1)
    return Case(orjson.dumps({"watermark": d.choice(["soon", 0, 1e300])}), dead=[dl.BAD_TIMESTAMP])


MAKERS = [single] * 6 + [batch] * 2 + [nan_ping, nan_latlon, not_json, oversize, columnar, broken_columnar, watermark,
          top_level_junk]


def message(d: Draw) -> Case:
    case = d.choice(MAKERS)(d)
    if len(case.value) > MAX_BYTES:  # a batch can outgrow the limit: then it is refused whole
        return Case(case.value, dead=[dl.OVERSIZE])
    return case


def messages(d: Draw, n: int) -> list[Case]:
    """n cases, some of them duplicated (Kafka may deliver the same message twice)."""
    out = []
    for _ in range(n):
        if out and d.int(0, 19) == 0:
            out.append(d.choice(out))
        else:
            out.append(message(d))
    return out


def check_decoded(cases: list[Case], limits: Limits = LIMITS) -> int:
    """Decode the cases as one partition's batch and compare with their verdicts; returns pings checked."""
    got = decode([(b"k", c.value) for c in cases], limits)
    pings = got.cell != WATERMARK
    got_good = [(u, c, t, int(cell)) for u, c, t, cell, p in zip(got.uid, got.city, got.ts.tolist(), got.cell, pings) if p]
    want_good = [g for c in cases for g in c.good]
    assert got_good == want_good
    assert int((~pings).sum()) == sum(c.marks for c in cases)
    assert Counter(x.reason for x in got.dead) == Counter(r for c in cases for r in c.dead)
    assert all(x.reason in dl.REASONS and x.detail and len(x.value) <= limits.max_bytes for x in got.dead)
    return len(want_good) + sum(len(c.dead) for c in cases)


FUZZED = [0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_fuzzed_messages_decode_to_their_verdicts(data):
    FUZZED[0] += check_decoded(messages(hypothesis_draw(data), 12))


def test_fuzz_volume():
    """The hypothesis test above plus this seeded sweep: at least 10,000 fuzzed pings per default run."""
    rng = random.Random(20261122)
    n = sum(check_decoded(messages(random_draw(rng), 40)) for _ in range(300))
    assert n >= 10_000, n


@pytest.mark.slow
def test_fuzz_many_seeds():
    for seed in range(20):
        rng = random.Random(seed)
        for _ in range(500):
            check_decoded(messages(random_draw(rng), 40))


@pytest.mark.parametrize("value, reason", [
    (b'{"uid": 1, "ts": 1' + b"0" * 400 + b', "x": 3, "y": 4}', dl.NAN),  # beyond float range: +inf
    (b'{"uid": 1, "ts": 1767571200, "lat": 1' + b"0" * 400 + b', "lon": 139.5}', dl.NAN),
    (b'{"watermark": 1' + b"0" * 400 + b"}", dl.NAN),
    (b"[" * 5000 + b"]" * 5000, dl.NOT_JSON),  # deeper than any parser's recursion limit
    (b'{"uid": {"a": ' * 3000 + b"1" + b"}" * 3001, dl.NOT_JSON),
    (rb'{"uid": "\ud800", "ts": 1767571200, "x": 3, "y": 4}', dl.NOT_JSON),  # a lone surrogate is not Unicode
    (rb'[{"uid": "ok\udfff", "ts": 1767571200, "x": 3, "y": 4}]', dl.NOT_JSON),
])
def test_hostile_values_are_dead_letters(value, reason):
    got = decode([(None, value)], Limits(max_future=0))  # the default 1 MiB limit: the deep ones are not oversize
    assert len(got) == 0 and [d.reason for d in got.dead] == [reason]


def test_json_fallback_cases_still_decode():
    """NaN literals (read by the standard-library fallback) and integers beyond 64 bits (orjson reads a float)."""
    got = decode([(None, b'{"uid": 1, "ts": NaN, "x": 3, "y": 4}'), (None, b'{"uid": 12345678901234567890123, '
                  b'"ts": 1767571200, "x": 3, "y": 4}')], LIMITS)
    assert [d.reason for d in got.dead] == [dl.NAN, dl.WRONG_TYPE] and len(got) == 0
