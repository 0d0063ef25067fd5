"""The columnar batch message decoded by whole columns (numpy), and the rows of decoded messages kept lazily.

A columnar message {"cols": {"uid": [...], "ts": [...], "x": [...], "y": [...]}, "city": "A"} carries
hundreds of pings; checking them one dict at a time cost ~5 us per ping, most of the worker's CPU.
Here every check of `stream.pings.check` runs once per column; a message with any row that fails one
returns None and takes the per-row path, so every dead letter keeps its exact reason and detail.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

FAST_COLUMNS = frozenset(("uid", "ts", "x", "y"))


def fast_columns(cols, city, limits, max_uid_chars: int, max_city_chars: int):
    """(uids as str, city, ts (N,) float64, cells (N,) int64) when every row is a valid x/y ping, else None."""
    if type(cols) is not dict or cols.keys() != FAST_COLUMNS:
        return None
    uid, ts, x, y = cols["uid"], cols["ts"], cols["x"], cols["y"]
    if not (type(uid) is list and type(ts) is list and type(x) is list and type(y) is list):
        return None
    n = len(uid)
    if n == 0 or len(ts) != n or len(x) != n or len(y) != n:
        return None
    if city is None:
        city = limits.default_city
    elif type(city) is not str or not 0 < len(city) <= max_city_chars or not city.isalnum():
        return None
    # set(map(type, ...)) runs in C: bools (a subclass of int) and None show up as their own types.
    kinds = set(map(type, uid))
    if kinds == {int}:
        uids = list(map(str, uid))
    elif kinds == {str} and 0 < min(map(len, uid)) and max(map(len, uid)) <= max_uid_chars:
        uids = uid
    else:
        return None
    if not set(map(type, ts)) <= {int, float} or set(map(type, x)) != {int} or set(map(type, y)) != {int}:
        return None
    try:
        t = np.array(ts, dtype=np.float64)  # (N,)
        xs = np.array(x, dtype=np.int64)  # (N,)
        ys = np.array(y, dtype=np.int64)  # (N,)
    except OverflowError:  # an int beyond 64 bits: the per-row path names it
        return None
    size = limits.grid.size
    if not ((t >= limits.min_ts) & (t < limits.max_ts)).all():
        return None
    if not ((xs > 0) & (xs <= size) & (ys > 0) & (ys <= size)).all():
        return None
    return uids, city, t, (ys - 1) * size + (xs - 1)


class Rows(Sequence):
    """What a dead letter for decoded row i would carry: per-row values, or row j of a columnar message
    rebuilt only when asked (a late ping), so good pings cost no per-row object."""

    def __init__(self) -> None:
        self._starts: list[int] = []  # first row of each part
        self._parts: list = []  # a list of per-row values, or (cols, city) of a columnar message
        self._n = 0

    def append(self, raw) -> None:
        if not self._parts or type(self._parts[-1]) is not list:
            self._starts.append(self._n)
            self._parts.append([])
        self._parts[-1].append(raw)
        self._n += 1

    def extend_columns(self, cols: dict, city, n: int) -> None:
        self._starts.append(self._n)
        self._parts.append((cols, city))
        self._n += n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int):
        if not -self._n <= i < self._n:
            raise IndexError(i)
        i %= self._n
        k = bisect.bisect_right(self._starts, i) - 1
        part, j = self._parts[k], i - self._starts[k]
        if type(part) is list:
            return part[j]
        cols, city = part
        row = {name: col[j] for name, col in cols.items()}
        if city is not None:
            row["city"] = city
        return row
