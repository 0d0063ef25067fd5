"""Record formats the stream writes and reads back: one encode/decode pair per record (round-trip tested).

Outputs (Kafka topics and Redis, read by the dashboard and any client): forecast, embedding, live error,
packed forecasts. Internal: packed flows (`flowj:`, written by ADVANCE in Lua), a partition's closed-slot
windows (`win:`) and the slot-work item that names them.
"""

from __future__ import annotations

import base64
import warnings
from dataclasses import dataclass

import numpy as np
import orjson

from models.grid import cell_xy
from stream.exceptions import StreamError


class RecordError(StreamError):
    """A value does not have its record's format (the message names the field)."""


# -- embeddings: Redis `emb:<uid>` and topic `user-embeddings` ------------------------------------------------

def embedding_docs(uids: list[str], city: str, slot: int, version: str, vecs: np.ndarray) -> list[bytes]:
    """`{"uid","city","slot","version","dim","dtype":"float32","embedding_b64"}` per row of vecs (N, dim): the
    vector as base64 of little-endian float32 (2.7 kB for 512 dims, exact). The shared fields are formatted once
    into a bytes template, base64 reads each row's buffer without a copy, orjson escapes the uid."""
    head = orjson.dumps({"city": city, "slot": slot, "version": version, "dim": int(vecs.shape[1]), "dtype": "float32"})
    fmt = b'{"uid":%s,' + head[1:-1].replace(b"%", b"%%") + b',"embedding_b64":"%s"}'
    dumps, b64 = orjson.dumps, base64.b64encode
    return [fmt % (dumps(u), b64(row)) for u, row in zip(uids, np.ascontiguousarray(vecs, dtype="<f4"))]


def embedding_doc(uid: str, city: str, slot: int, version: str, vec: np.ndarray) -> bytes:
    return embedding_docs([uid], city, slot, version, np.asarray(vec)[None])[0]


def decode_embedding(raw: bytes) -> tuple[dict, np.ndarray]:
    """An embedding record -> (its other fields, the vector (dim,) float32)."""
    try:
        doc = orjson.loads(raw)
        b64 = doc.pop("embedding_b64")
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise RecordError(f"not an embedding record (a JSON object with field 'embedding_b64'): {exc}") from exc
    if doc.get("dtype") != "float32":
        raise RecordError(f"field 'dtype' is {doc.get('dtype')!r}, expected 'float32'")
    try:
        vec = np.frombuffer(base64.b64decode(b64, validate=True), dtype="<f4")
    except (ValueError, TypeError) as exc:
        raise RecordError(f"field 'embedding_b64' is not base64 of float32 ({exc})") from exc
    if not len(vec) or len(vec) != doc.get("dim"):
        raise RecordError(f"field 'embedding_b64' holds {len(vec)} values, field 'dim' says {doc.get('dim')!r}")
    return doc, vec.astype(np.float32)


# -- forecasts: topic `flow-forecasts` and Redis `fc:<slot>` (cell -> record) --------------------------------

# Every 4-decimal fraction as orjson writes it (".0", ".5", ".0625", ...): forecasts are formatted from integers.
_FRAC = np.array([b".0"] + [(b".%04d" % r).rstrip(b"0") for r in range(1, 10_000)], dtype="S5")


def forecast_records(city: str, slot: int, version: str, cells: np.ndarray, pred: np.ndarray,
                     horizon: int = 1) -> list[bytes]:
    """`{"city","slot": slot+horizon,"made_at": slot,"horizon","version","cell","x","y","occ","in","out"}` per cell
    (expected counts `horizon` slots after the close of `slot`), rounded to 4 decimals, byte for byte what orjson
    writes for that dict in a third of the time: counts become integer and fraction parts in numpy, then one
    bytes template per record. Negative, huge or non-finite counts take orjson itself."""
    x, y = cell_xy(cells)
    head = {"city": city, "slot": slot + horizon, "made_at": slot, "horizon": horizon, "version": version}
    pred = np.asarray(pred, dtype=np.float64).round(4)  # (N, 3)
    if not (np.isfinite(pred).all() and (pred >= 0).all() and (pred < 1e9).all()):
        dumps = orjson.dumps
        return [dumps({**head, "cell": c, "x": cx, "y": cy, "occ": o, "in": i, "out": u})
                for c, cx, cy, (o, i, u) in zip(cells.tolist(), x.tolist(), y.tolist(), pred.tolist())]
    whole, frac = np.divmod(np.rint(pred * 1e4).astype(np.int64), 10_000)  # (N, 3) each
    rows = np.empty((len(cells), 9), dtype=object)  # (N, 9): cell, x, y, then (whole, fraction text) per count
    rows[:, 0], rows[:, 1], rows[:, 2] = cells, x, y
    rows[:, 3::2], rows[:, 4::2] = whole, _FRAC[frac]
    fmt = orjson.dumps(head)[:-1].replace(b"%", b"%%") + b',"cell":%d,"x":%d,"y":%d,"occ":%d%s,"in":%d%s,"out":%d%s}'
    it = iter(rows.ravel().tolist())
    return [fmt % row for row in zip(it, it, it, it, it, it, it, it, it)]


def decode_forecasts(raws: list[bytes]) -> np.ndarray:
    """Forecast records -> their counts (N, 3) float32 (occ, in, out), in one JSON parse."""
    if not raws:
        return np.zeros((0, 3), dtype=np.float32)
    try:
        docs = orjson.loads(b"[" + b",".join(raws) + b"]")
        return np.array([(d["occ"], d["in"], d["out"]) for d in docs], dtype=np.float32)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"a forecast record is not JSON ({exc})") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"a forecast record has no numeric field {exc} (fields: occ, in, out)") from exc


def pack_forecasts(version: str, cells: np.ndarray, pred: np.ndarray) -> bytes:
    """`fcn:<slot>`: "<version> <H>", newline, int32 cells (n,), float32 counts (n, H, 3), little-endian.
    A value without " <H>" (written before forecasts had horizons) holds (n, 1, 3)."""
    pred = np.asarray(pred).reshape(len(cells), -1, 3)  # (n, H, 3)
    return b"%s %d\n" % (version.encode(), pred.shape[1]) + cells.astype("<i4").tobytes() + pred.astype("<f4").tobytes()


def unpack_forecasts(raw: bytes) -> tuple[str, np.ndarray, np.ndarray]:
    """-> version, cells (n,), counts (n, H, 3)."""
    head, _, body = raw.partition(b"\n")
    version, _, h = head.partition(b" ")
    h = int(h) if h else 1
    n = len(body) // (4 + 12 * h)
    return version.decode(), np.frombuffer(body[: 4 * n], "<i4").astype(np.int64), np.frombuffer(body[4 * n:], "<f4").reshape(n, h, 3)


# -- live forecast error: Redis `err` (slot -> record) --------------------------------------------------------

def error_doc(slot: int, cells: int, horizons: dict[int, dict]) -> bytes:
    """`{"slot","cells","persistence","model"[,"version"],"horizons": {"<h>": {"persistence","model"[,"version"]}}}`:
    per horizon h the scores (models.flow_scores: rmse, mae, ...) of the forecast made h slots before and of
    persistence, null when not computable; the top-level persistence/model are horizon 1's MAE."""
    first = horizons.get(1, {})
    doc = {"slot": slot, "cells": cells,
           "persistence": first["persistence"]["mae"] if first.get("persistence") else None, "model": None,
           "horizons": {str(h): row for h, row in horizons.items()}}
    if first.get("model") is not None:
        doc["model"], doc["version"] = first["model"]["mae"], first["version"]
    return orjson.dumps(doc)


def decode_error(raw: bytes, horizon: int = 1) -> dict:
    """An error record -> {"slot", "model", "persistence"}: horizon `horizon`'s MAE, NaN when null or absent."""
    try:
        doc = orjson.loads(raw)
        if horizon == 1:
            model, persistence = doc["model"], doc["persistence"]
        else:
            row = (doc.get("horizons") or {}).get(str(horizon)) or {}
            model, persistence = ((row.get(n) or {}).get("mae") for n in ("model", "persistence"))
        nan = float("nan")
        return {"slot": doc.get("slot"), "model": nan if model is None else float(model),
                "persistence": nan if persistence is None else float(persistence)}
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"an error record is not JSON ({exc})") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RecordError(f"an error record lacks a numeric or null field {exc} "
                          "(fields: model, persistence, horizons)") from exc


# -- assembled flows: Redis `flowj:<slot>`, written by ADVANCE (stream.windows.lua_slots) --------------------

def flow_value(cells: np.ndarray, counts: np.ndarray) -> bytes:
    """cells (n,), counts (n, 3) -> `[[cell,...],[occ,in,out,...]]`, the value ADVANCE writes."""
    return orjson.dumps([np.asarray(cells).tolist(), np.asarray(counts).ravel().tolist()])


def parse_flow(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A `flowj:` value -> cells (n,), counts (n, 3). numpy's text reader takes half the time of orjson +
    np.asarray (8 x 40,000 cells a forecast); anything it does not read to the end goes through orjson."""
    mid = raw.find(b"],[")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns, and stops, at text it cannot read
            cells = np.fromstring(raw[2:mid], dtype=np.int64, sep=",")
            counts = np.fromstring(raw[mid + 3:-2], dtype=np.int64, sep=",")
        ok = mid > 0 and raw[:2] == b"[[" and raw[-2:] == b"]]" and len(counts) == 3 * len(cells)
    except (ValueError, DeprecationWarning):
        ok = False
    if not ok:
        cells, counts = orjson.loads(raw)
        cells, counts = np.asarray(cells, dtype=np.int64), np.asarray(counts, dtype=np.int64)
    return cells, counts.reshape(-1, 3)  # (n,), (n, 3)


# -- slot work (internal topic) and the windows it names ------------------------------------------------------

EMBED, FORECAST = "embed", "forecast"


@dataclass(frozen=True)
class Work:
    """One unit of inference: `embed` a partition's closed slot (windows at Redis `key`), or `forecast` an
    assembled city slot (flows at `flowj:` keys; `key` names the slot's)."""

    kind: str
    city: str
    slot: int
    part: int
    key: str


def encode_work(w: Work) -> bytes:
    return orjson.dumps({"kind": w.kind, "city": w.city, "slot": w.slot, "part": w.part, "key": w.key})


def decode_work(raw: bytes) -> Work:
    try:
        d = orjson.loads(raw)
        w = Work(str(d["kind"]), str(d["city"]), int(d["slot"]), int(d["part"]), str(d["key"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"slot-work item {raw[:80]!r}: {type(exc).__name__} {exc} "
                          "(fields: kind, city, slot, part, key)") from exc
    if w.kind not in (EMBED, FORECAST):
        raise RecordError(f"slot-work item: field 'kind' is {w.kind!r}, expected {EMBED!r} or {FORECAST!r}")
    return w


def pack_windows(uids: list, cells: np.ndarray) -> bytes:
    """A closed slot's windows in one value: int32 n, int32 width, int32 uid lengths (n,), the uids' UTF-8,
    then int32 cells (n, width) (-1 = not seen), little-endian."""
    cells = np.asarray(cells)
    raw = [str(u).encode() for u in uids]
    head = np.array([len(raw), cells.shape[1] if cells.ndim == 2 else 0, *map(len, raw)], dtype="<i4")
    return head.tobytes() + b"".join(raw) + cells.astype("<i4").tobytes()


def unpack_windows(raw: bytes) -> tuple[list[str], np.ndarray]:
    """-> uids (as str), cells (n, width) int64."""
    try:
        n, width = np.frombuffer(raw[:8], "<i4").tolist()
        lengths = np.frombuffer(raw[8:8 + 4 * n], "<i4")
        at = 8 + 4 * n
        ends = at + np.cumsum(lengths)
        uids = [raw[s:e].decode() for s, e in zip(np.concatenate([[at], ends[:-1]]).tolist(), ends.tolist())]
        body = raw[int(ends[-1]) if n else at:]
        cells = np.frombuffer(body, "<i4").reshape(n, width).astype(np.int64)  # (n, width)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"packed windows of {len(raw)} bytes do not decode ({exc})") from exc
    return uids, cells
