"""The durable copy of a partition's slot tables: append-only frames of accepted pings (pure encode/decode).

One frame per batch and (city, slot), appended to that slot's log key in Redis (stream.keys
`log`): Redis does a memcpy per batch instead of Lua per ping. A log may hold a ping twice (a
batch redelivered after a crash); loading reduces it by the same latest-wins rule, so the windows
are the same.

Frame: b"W1", uint32 n, uint32 len(uids JSON), the uids as a JSON list of strings, n int64
event times (ms), n int32 cells; little-endian.
"""

from __future__ import annotations

import struct

import numpy as np
import orjson

from stream.exceptions import StreamError

MAGIC = b"W1"
HEAD = struct.Struct("<2sII")


class LogFormatError(StreamError):
    """A log value in Redis is not a sequence of frames (the message names the key)."""


def encode(uids: list[str], ts_ms: np.ndarray, cells: np.ndarray) -> bytes:
    names = orjson.dumps(uids)
    return b"".join((HEAD.pack(MAGIC, len(uids), len(names)), names,
                     np.ascontiguousarray(ts_ms, dtype="<i8").tobytes(),
                     np.ascontiguousarray(cells, dtype="<i4").tobytes()))


def decode(blob: bytes, key: str = "log") -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every frame of a log -> (uids, ts_ms (N,) int64, cells (N,) int64), in append order."""
    uids: list[str] = []
    ts, cells = [], []
    at, end = 0, len(blob)
    while at < end:
        if end - at < HEAD.size:
            raise LogFormatError(f"{key}: truncated frame header at byte {at}")
        magic, n, nj = HEAD.unpack_from(blob, at)
        stop = at + HEAD.size + nj + 12 * n
        if magic != MAGIC or stop > end:
            raise LogFormatError(f"{key}: bad frame at byte {at} (magic {magic!r}, {n} pings, {end - at} bytes left)")
        at += HEAD.size
        names = orjson.loads(blob[at:at + nj])
        if len(names) != n:
            raise LogFormatError(f"{key}: frame at byte {at - HEAD.size} names {len(names)} uids for {n} pings")
        uids += names
        at += nj
        ts.append(np.frombuffer(blob, dtype="<i8", count=n, offset=at))
        at += 8 * n
        cells.append(np.frombuffer(blob, dtype="<i4", count=n, offset=at))
        at += 4 * n
    if not ts:
        return [], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return uids, np.concatenate(ts).astype(np.int64), np.concatenate(cells).astype(np.int64)
