"""The columnar batch form against the same pings as rows: same pings, same dead letters (one set of rules)."""

from __future__ import annotations

import json

import orjson
from hypothesis import given, settings, strategies as st

from stream.pings import Limits, decode

LIM = Limits(max_future=0)
TS = 1_767_571_200.5

# Mostly valid values, with every kind of bad one a column can hold.
UIDS = st.one_of(st.integers(0, 10**6), st.text(min_size=1, max_size=5),
                 st.sampled_from(["", "u" * 129, True, None, 1.5, 2**70]))
TSS = st.one_of(st.floats(TS, TS + 10**6), st.integers(int(TS), int(TS) + 10**6),
                st.sampled_from([0, -1.0, 5e12, "2026-01-05T00:10:00Z", "x", None, False]))
XYS = st.one_of(st.integers(1, 200), st.sampled_from([0, 201, 999, -3, 1.0, "5", None, True, 2**64]))


def as_rows(cols: dict, city) -> bytes:
    """The same pings as a JSON array of ping objects: the per-row path."""
    extra = {} if city is None else {"city": city}
    return json.dumps([dict(zip(cols, row), **extra) for row in zip(*cols.values())]).encode()


def same(a, b) -> None:
    assert a.uid == b.uid and a.city == b.city and a.keys == b.keys
    assert a.ts.tolist() == b.ts.tolist() and a.cell.tolist() == b.cell.tolist()
    assert [(d.reason, d.detail, d.value) for d in a.dead] == [(d.reason, d.detail, d.value) for d in b.dead]
    assert list(a.raw) == list(b.raw)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(UIDS, TSS, XYS, XYS), min_size=1, max_size=12),
       city=st.sampled_from([None, "A", "B7", "", "a-b", 3]), valid=st.booleans())
def test_columnar_decodes_as_the_same_rows(rows, city, valid):
    if valid:  # half the examples all-valid, so the vectorised path is taken
        rows = [(i, TS + i, 1 + i % 200, 200 - i % 200) for i, _ in enumerate(rows)]
    cols = {"uid": [r[0] for r in rows], "ts": [r[1] for r in rows], "x": [r[2] for r in rows],
            "y": [r[3] for r in rows]}
    msg = {"cols": cols} if city is None else {"cols": cols, "city": city}
    got = decode([(b"k", json.dumps(msg).encode())], LIM)  # json: orjson refuses ints beyond 64 bits
    want = decode([(b"k", as_rows(cols, city))], LIM)
    same(got, want)
    if valid and city in (None, "A", "B7"):
        assert len(got) == len(rows)


def test_a_columnar_message_among_other_forms_keeps_rows_in_order():
    single = orjson.dumps({"uid": "s", "ts": TS, "x": 1, "y": 1})
    cols = orjson.dumps({"cols": {"uid": [1, 2], "ts": [TS, TS + 1], "x": [2, 3], "y": [4, 5]}, "city": "B"})
    got = decode([(b"a", single), (b"b", cols), (b"c", single)], LIM)
    assert got.uid == ["s", "1", "2", "s"] and got.city == ["A", "B", "B", "A"] and got.keys == [b"a", b"b", b"b", b"c"]
    assert got.cell.tolist() == [0, 3 * 200 + 1, 4 * 200 + 2, 0]
    assert got.raw[0] == single and got.raw[3] == single and got.raw[-1] == single
    assert got.raw[2] == {"uid": 2, "ts": TS + 1, "x": 3, "y": 5, "city": "B"}
