"""The rules of a valid ping, applied once to columns of JSON values (numpy where it counts), whatever the message form.

Each rule runs over a whole column: a column whose values all have the expected type takes a
vectorised path; otherwise the same rule is applied value by value. A row's first failed rule, in
the order uid, ts, city, location, is its dead-letter reason and detail; later rules skip it.
"""

from __future__ import annotations

import datetime as dt
import math
from itertools import repeat

import numpy as np

from models.grid import MASKED, cell_id, in_grid
from stream import deadletter as dl

MAX_UID_CHARS = 128
MAX_CITY_CHARS = 32
_NONE = type(None)


class Verdicts:
    """The first failure (reason, detail) of each failed row; `alive` marks rows with none so far."""

    def __init__(self, n: int) -> None:
        self.alive = np.ones(n, dtype=bool)  # (N,)
        self.dead: dict[int, tuple[str, str]] = {}

    def fail(self, i: int, reason: str, detail: str) -> None:
        if self.alive[i]:
            self.alive[i] = False
            self.dead[i] = (reason, detail)

    def fail_where(self, mask: np.ndarray, reason: str, detail) -> None:
        """Fail every alive row in `mask`; detail(i) says why for row i."""
        hit = mask & self.alive
        if not hit.any():
            return
        for i in np.flatnonzero(hit).tolist():
            self.fail(i, reason, detail(i))


def uids(col: list, v: Verdicts) -> list[str]:
    """uid: an int (as its decimal string) or a string of 1..MAX_UID_CHARS characters."""
    kinds = set(map(type, col))
    if kinds == {int}:
        return list(map(str, col))
    if kinds == {str} and 0 < min(map(len, col)) and max(map(len, col)) <= MAX_UID_CHARS:
        return col
    out = [""] * len(col)
    for i, u in enumerate(col):
        t = type(u)
        if t is int:
            out[i] = str(u)
        elif t is str and 0 < len(u) <= MAX_UID_CHARS:
            out[i] = u
        elif u is None:
            v.fail(i, dl.MISSING_FIELD, "missing field 'uid'")
        elif t is str:
            v.fail(i, dl.WRONG_TYPE, f"field 'uid' must be 1..{MAX_UID_CHARS} characters")
        else:
            v.fail(i, dl.WRONG_TYPE, f"field 'uid' is {t.__name__}, expected int or str")
    return out


def times(col: list, fallback: list | None, lo: float, hi: float, v: Verdicts) -> np.ndarray:
    """ts: epoch seconds (a number) or an ISO-8601 string (naive = UTC), finite, in [lo, hi).

    `fallback[i]` (the Kafka record timestamp in seconds, or None) stands in for a missing ts."""
    if set(map(type, col)) <= {int, float}:
        t = np.array(col, dtype=np.float64)  # (N,)
    else:
        t = np.full(len(col), np.nan)
        for i, x in enumerate(col):
            tx = type(x)
            if tx is int or tx is float:
                t[i] = x
            elif tx is str:
                try:
                    when = dt.datetime.fromisoformat(x)
                    t[i] = (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()
                except (ValueError, OverflowError):
                    v.fail(i, dl.BAD_TIMESTAMP, f"field 'ts' {x[:40]!r} is not an ISO-8601 time")
            elif x is None and fallback is not None and fallback[i] is not None:
                t[i] = fallback[i]
            elif x is None:
                v.fail(i, dl.MISSING_FIELD, "missing field 'ts'")
            else:
                v.fail(i, dl.WRONG_TYPE, f"field 'ts' is {tx.__name__}, expected a number or ISO-8601 string")
    finite = np.isfinite(t)
    v.fail_where(~finite, dl.NAN, lambda i: "field 'ts' is not finite")
    with np.errstate(invalid="ignore"):
        v.fail_where(finite & ~((t >= lo) & (t < hi)), dl.BAD_TIMESTAMP, lambda i: (
            f"field 'ts' {t[i]:.0f} lies outside [{lo:.0f}, {hi:.0f}) "
            f"(the upper bound: 2100, or wall clock + max_future, MOBSTREAM_MAX_FUTURE)"))
    return t


def cities(col: list, default: str, v: Verdicts) -> list[str]:
    """city: 1..MAX_CITY_CHARS letters or digits; absent (or null) = the default city."""
    if col.count(None) == len(col):
        return [default] * len(col)
    kinds = set(map(type, col))
    out = col if _NONE not in kinds else [default if c is None else c for c in col]
    names = {c for c in out if type(c) is str} if kinds - {str, _NONE} else set(out)
    good = {c for c in names if 0 < len(c) <= MAX_CITY_CHARS and c.isalnum()}
    if kinds <= {str, _NONE} and len(good) == len(names):
        return out
    for i, c in enumerate(out):
        if type(c) is not str or c not in good:
            v.fail(i, dl.WRONG_TYPE, f"field 'city' must be 1..{MAX_CITY_CHARS} letters or digits")
    return out


def _pair(na: str, a, nb: str, b, ints: bool):
    """(reason, detail) when the pair (a, b) of fields na, nb is malformed, else None."""
    if a is None or b is None:
        return dl.MISSING_FIELD, f"missing field {na if a is None else nb!r}"
    for name, x in ((na, a), (nb, b)):
        t = type(x)
        if t is int or (t is float and not ints and math.isfinite(x)):
            continue
        if t is float and not math.isfinite(x):
            return dl.NAN, f"field {name!r} is not finite"
        return dl.WRONG_TYPE, f"field {name!r} is {t.__name__}, expected {'int' if ints else 'a number'}"
    return None


def _clip(n: int) -> int:
    return min(max(n, -1), 1 << 40)  # any int beyond the grid stays beyond it, and fits int64


def cells(x: list, y: list, lat: list, lon: list, grid, v: Verdicts) -> np.ndarray:
    """The dense cell id from x/y (ints 1..size, not the masked 999/999) or lat/lon (numbers mapped by `grid`).

    A ping with both is accepted when both are well-formed and lat/lon lies in the cell x/y names;
    two well-formed pairs that disagree (or one of them off the grid) are a `conflict`."""
    n, size = len(x), grid.size
    no_ll = lat.count(None) == n and lon.count(None) == n  # list.count runs in C
    kx, ky = set(map(type, x)), set(map(type, y))
    kla, klo = ({_NONE}, {_NONE}) if no_ll else (set(map(type, lat)), set(map(type, lon)))
    if kx == ky == {int} and no_ll:  # every row x/y: no per-row step
        try:
            xs, ys = np.array(x, dtype=np.int64), np.array(y, dtype=np.int64)  # (N,) each
        except OverflowError:  # an int beyond 64 bits (orjson reads up to 2**64 - 1)
            xs, ys = np.array(list(map(_clip, x)), dtype=np.int64), np.array(list(map(_clip, y)), dtype=np.int64)
        has_xy, has_ll = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
        la = lo = np.zeros(n)
    elif kx == ky == {_NONE} and kla | klo <= {int, float}:  # every row lat/lon
        xs = ys = np.zeros(n, dtype=np.int64)
        has_xy, has_ll = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
        la, lo = np.array(lat, dtype=np.float64), np.array(lon, dtype=np.float64)
        v.fail_where(~np.isfinite(la), dl.NAN, lambda i: "field 'lat' is not finite")
        v.fail_where(~np.isfinite(lo), dl.NAN, lambda i: "field 'lon' is not finite")
    else:
        xs, ys = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        la, lo = np.zeros(n), np.zeros(n)
        has_xy, has_ll = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        for i, (a, b, c, d) in enumerate(zip(x, y, lat, lon)):
            xy, ll = a is not None or b is not None, c is not None or d is not None
            bad = _pair("x", a, "y", b, True) if xy else None
            bad = bad or (_pair("lat", c, "lon", d, False) if ll else None)
            if not (xy or ll):
                bad = dl.MISSING_FIELD, "missing field 'x/y or lat/lon'"
            if bad:
                v.fail(i, *bad)
                continue
            if xy:
                xs[i], ys[i], has_xy[i] = _clip(a), _clip(b), True
            if ll:
                la[i], lo[i], has_ll[i] = c, d, True
    masked = (xs == MASKED) & (ys == MASKED)
    xy_ok = in_grid(xs, ys, size)
    only_xy = has_xy & ~has_ll
    v.fail_where(only_xy & masked, dl.MASKED, lambda i: f"cell ({MASKED}, {MASKED}) is a masked record, not a location")
    v.fail_where(only_xy & ~xy_ok, dl.OUT_OF_GRID, lambda i: f"cell ({x[i]}, {y[i]}) lies outside the {size}x{size} grid")
    if not has_ll.any():
        return cell_id(xs, ys, size)
    gx, gy, on_grid = grid.to_cells(la, lo)  # (N,) each; off-grid where no lat/lon
    v.fail_where(has_ll & ~has_xy & ~on_grid, dl.OUT_OF_GRID, lambda i: f"lat/lon ({lat[i]}, {lon[i]}) lies outside the grid")
    v.fail_where(has_xy & has_ll & ~(xy_ok & on_grid & (gx == xs) & (gy == ys)), dl.CONFLICT, lambda i: (
        f"x/y ({x[i]}, {y[i]}) and lat/lon ({lat[i]}, {lon[i]}) name different cells (lat/lon is "
        + (f"in cell ({gx[i]}, {gy[i]}))" if on_grid[i] else "outside the grid)")))
    return np.where(has_xy, cell_id(xs, ys, size), cell_id(gx, gy, size))


def column(rows: list[dict], name: str) -> list:
    """rows' values of field `name` (None where absent)."""
    return list(map(dict.get, rows, repeat(name)))
