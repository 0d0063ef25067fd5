"""Reads a replay file in event-time order with bounded memory (DuckDB sorts, spilling to disk if it must).

Formats, told apart by their header:
  yjmob   uid,d,t,x,y                  YJMob100K / HuMob; ts = slots.replay_ts(d, t, uid); 999,999 masked
  gps     uid,lat,lon,timestamp        raw GPS; timestamp epoch seconds or ISO-8601; cells mapped by the worker
CSV, CSV.gz or Parquet.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from models.grid import MASKED
from models.slots import DEFAULT_ORIGIN, replay_ts, slot_from_dt, slots_of
from stream.exceptions import StreamError

YJMOB = ("uid", "d", "t", "x", "y")
GPS = ("uid", "lat", "lon", "timestamp")
_CITY = re.compile(r"city_?([A-Za-z])(?:[_\-.]|$)")


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


def city_of(path: Path) -> str:
    m = _CITY.search(path.name)
    return m.group(1).upper() if m else "A"


def header_of(path: Path) -> tuple[str, ...]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return tuple(pq.read_schema(path).names)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as f:
            return tuple(c.strip() for c in f.readline().split(","))
    except (OSError, UnicodeDecodeError) as exc:  # text mode decodes a whole buffer, not just the header line
        raise ReplayError(f"cannot read {path}: {exc}") from exc


def format_of(path: Path) -> str:
    head = header_of(path)
    if head[:5] == YJMOB:
        return "yjmob"
    if head[:4] == GPS:
        return "gps"
    raise ReplayError(f"{path}: header {','.join(head)!r} is neither {','.join(YJMOB)} nor {','.join(GPS)}")


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


def _relation(path: Path) -> str:
    p = str(path).replace("'", "''")
    if path.suffix == ".parquet":
        return f"read_parquet('{p}')"
    return f"read_csv('{p}', header=true, auto_detect=true)"


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


def query(path: Path, fmt: str, days, users, origin: int) -> str:
    if fmt == "yjmob":
        return (f"SELECT uid, d, t, x, y FROM {_relation(path)}{_where(fmt, days, users, origin)} "
                "ORDER BY d, t, uid")
    ts = ("CASE WHEN typeof(timestamp) IN ('VARCHAR') THEN epoch(CAST(timestamp AS TIMESTAMPTZ)) "
          "ELSE CAST(timestamp AS DOUBLE) END")
    inner = f"SELECT uid, lat, lon, {ts} AS ts FROM {_relation(path)}"
    return f"SELECT * FROM ({inner}){_where(fmt, days, users, origin)} ORDER BY ts, uid"


def read(path: Path, days=None, users=None, origin: int = DEFAULT_ORIGIN, chunk_rows: int = 200_000,
         memory_limit: str = "1GB") -> tuple[int, Iterator[Chunk]]:
    """(row count, chunks in event-time order)."""
    import duckdb

    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"replay file {path} does not exist")
    fmt = format_of(path)
    con = duckdb.connect()
    con.execute(f"SET memory_limit='{memory_limit}'")
    sql = query(path, fmt, days, users, origin)
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

    return int(total), chunks()


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
