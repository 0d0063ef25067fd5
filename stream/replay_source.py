"""Reads a replay file in event-time order with bounded memory (DuckDB sorts, spilling to disk if it must).

Formats, told apart by their header:
  yjmob   uid,d,t,x,y                  YJMob100K / HuMob; ts = slots.replay_ts(d, t, uid); 999,999 masked
  gps     uid,lat,lon,timestamp        raw GPS; timestamp epoch seconds or milliseconds, or ISO-8601 (with or
                                       without zone, fractional seconds); cells mapped by the worker
CSV, CSV.gz or Parquet. A file is read through training.readers (the offline reader: same timestamp rule,
same row checks) into DuckDB before anything is sent; a bad row (yjmob: a field out of range, a second
record of a user in a slot; gps: bad timestamp, before the origin, not finite; negative uid) stops the
replay with one line naming file, line and field, unless skip_bad.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from models.grid import MASKED
from models.slots import DEFAULT_ORIGIN, replay_ts, slot_from_dt, slots_of
from stream.exceptions import StreamError

YJMOB = ("uid", "d", "t", "x", "y")
GPS = ("uid", "lat", "lon", "timestamp")
log = logging.getLogger(__name__)


class ReplayError(StreamError):
    """A replay file or filter cannot be used."""


@dataclass(frozen=True)
class Chunk:
    """Rows in slot order: uid, slot, ts, and either x, y (yjmob) or lat, lon (gps) columns."""

    uid: np.ndarray
    slot: np.ndarray
    ts: np.ndarray
    a: np.ndarray  # x or lat
    b: np.ndarray  # y or lon
    masked: int  # masked rows skipped in this chunk


def describe(path: Path):
    """The file's training.readers.Dataset (format from its header, city from its name: the offline rules),
    refused unless it is a replayable yjmob or gps file."""
    from training.exceptions import DataFormatError
    from training.readers import describe as describe_file

    try:
        ds = describe_file(path)
    except DataFormatError as exc:
        raise ReplayError(f"{exc}; nothing was sent") from exc
    if ds.format not in COLUMNS:
        raise ReplayError(f"{path}: a {ds.format} file; a replay sends yjmob ({','.join(YJMOB)}) or gps "
                          f"({','.join(GPS)}) rows")
    return ds


def parse_users(spec: str | None) -> list[tuple[int, int]] | None:
    """'1-100,205' -> [(1, 100), (205, 205)]."""
    if not spec:
        return None
    out = []
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            out.append((int(lo), int(hi or lo)))
        except ValueError:
            raise ReplayError(f"setting users: {part!r} is not a uid or uid range like 1-100") from None
    return out


def _where(fmt: str, days: tuple[int, int] | None, users, origin: int) -> str:
    conds = []
    if days is not None:
        if fmt == "yjmob":
            conds.append(f"d BETWEEN {int(days[0])} AND {int(days[1])}")
        else:
            conds.append(f"ts >= {origin + days[0] * 86400} AND ts < {origin + (days[1] + 1) * 86400}")
    if users:
        conds.append("(" + " OR ".join(f"uid BETWEEN {lo} AND {hi}" for lo, hi in users) + ")")
    return (" WHERE " + " AND ".join(conds)) if conds else ""


ROWS = "replay_rows"
COLUMNS = {"yjmob": ("uid", "d", "t", "x", "y"), "gps": ("uid", "lat", "lon", "ts")}
_TYPES = {"yjmob": "uid BIGINT, d BIGINT, t BIGINT, x BIGINT, y BIGINT",
          "gps": "uid BIGINT, lat DOUBLE, lon DOUBLE, ts DOUBLE"}


def query(fmt: str, days, users, origin: int) -> str:
    order = "d, t, uid" if fmt == "yjmob" else "ts, uid"
    return f"SELECT {', '.join(COLUMNS[fmt])} FROM {ROWS}{_where(fmt, days, users, origin)} ORDER BY {order}"


def load(con, path: Path, fmt: str, origin: int, skip_bad: bool) -> int:
    """Load a file's valid rows through training.readers into table ROWS (gps ts in epoch seconds); returns the
    bad rows skipped. Kept as rows: masked yjmob records (counted by the replay), gps points outside the
    grid (the worker maps lat/lon with its own grid and dead-letters them)."""
    import pyarrow as pa

    from training.exceptions import DataFormatError
    from training.readers import ReadSummary, read_chunks

    summary = ReadSummary()
    con.execute(f"CREATE TABLE {ROWS} ({_TYPES[fmt]})")
    try:
        for cols in read_chunks(path, fmt, strict=False, summary=summary, origin=origin, cells=False):
            rows = pa.table({k: cols[k] for k in COLUMNS[fmt]})  # noqa: F841 - DuckDB reads it by name
            con.execute(f"INSERT INTO {ROWS} SELECT * FROM rows")
    except DataFormatError as exc:
        raise ReplayError(f"{exc}; nothing was sent") from exc
    if summary.bad_rows:
        counts = ", ".join(f"{k} {n}" for k, n in sorted(summary.bad.items()))
        first = summary.examples[0].message()
        if not skip_bad:
            raise ReplayError(f"{first} ({summary.bad_rows} bad rows: {counts}); nothing was sent "
                              "(setting skip_bad_rows, MOBSTREAM_SKIP_BAD_ROWS, replays the valid rows)")
        log.warning("%s: skipping %d bad rows (%s); the first: %s", path, summary.bad_rows, counts, first)
    return summary.bad_rows


def read(path: Path, days=None, users=None, origin: int = DEFAULT_ORIGIN, chunk_rows: int = 200_000,
         memory_limit: str = "1GB", skip_bad: bool = False) -> tuple[int, Iterator[Chunk], int]:
    """(row count, chunks in event-time order, bad rows skipped)."""
    import duckdb

    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"replay file {path} does not exist")
    fmt = describe(path).format
    con = duckdb.connect()
    con.execute(f"SET memory_limit='{memory_limit}'")
    con.execute("SET enable_progress_bar=false")  # the replay has its own; DuckDB's would print on stderr
    try:
        skipped = load(con, path, fmt, origin, skip_bad)
    except BaseException:
        con.close()
        raise
    sql = query(fmt, days, users, origin)
    try:
        total = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
        cur = con.execute(sql)
    except duckdb.Error as exc:
        raise ReplayError(f"{path}: cannot read as {fmt}: {exc}") from exc

    def chunks() -> Iterator[Chunk]:
        try:
            while True:
                df = cur.fetch_df_chunk(max(1, chunk_rows // 2048))  # vectors of 2048 rows
                if len(df) == 0:
                    return
                yield _chunk(fmt, {k: df[k].to_numpy() for k in df.columns}, origin)
        finally:
            con.close()

    return int(total), chunks(), skipped


def _chunk(fmt: str, cols: dict, origin: int) -> Chunk:
    uid = cols["uid"].astype(np.int64)
    if fmt == "yjmob":
        x, y = cols["x"].astype(np.int64), cols["y"].astype(np.int64)
        keep = ~((x == MASKED) & (y == MASKED))
        d, t = cols["d"].astype(np.int64)[keep], cols["t"].astype(np.int64)[keep]
        uid = uid[keep]
        return Chunk(uid, slot_from_dt(d, t), replay_ts(d, t, uid, origin), x[keep], y[keep], int((~keep).sum()))
    ts = cols["ts"].astype(np.float64)
    return Chunk(uid, slots_of(ts, origin), ts, cols["lat"].astype(np.float64), cols["lon"].astype(np.float64), 0)
