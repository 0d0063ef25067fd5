"""Read-only views of the stream's Redis state (layout: `stream.keys`), for the dashboard and tools.

Every function takes a synchronous `redis.Redis` client and a `Keys`, issues reads only (GET, HGET,
HGETALL, HMGET, MGET, SCAN, pipelines of those) and returns plain numpy arrays or dicts. Flows come
back dense: an array (3, size, size) of occupancy, inflow and outflow, row = y - 1, column = x - 1.

The forecast, embedding and error values are JSON whose exact shape the worker's outputs own; the
parsers below accept the shapes listed in `docs/dashboard.md` (a list, or an object with named fields)
so a small change there does not blank the dashboard.
"""

from __future__ import annotations

import base64
import warnings
from dataclasses import dataclass

import numpy as np
import orjson

from models.grid import GRID_SIZE
from models.slots import WINDOW_SLOTS, window_slots
from stream.exceptions import StreamError
from stream.keys import Keys
from stream.redis_client import is_cluster

CHANNELS = ("occupancy", "inflow", "outflow")
_CHANNEL_NAMES = (("occ", "occupancy", "o"), ("in", "inflow", "i"), ("out", "outflow", "u"))
_VECTOR_NAMES = ("embedding", "emb", "vector", "e", "v")
_PRED_NAMES = ("pred", "forecast", "y", "counts", "p")


class ReadError(StreamError):
    """A value in Redis does not have the documented format (the message names the key and field)."""


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def latest_slots(r, keys: Keys) -> dict[str, int]:
    """City -> the last slot whose flows are assembled (the dashboard's "now"); {} before any close."""
    cities = sorted(_s(c) for c in r.smembers(keys.cities))
    with r.pipeline(transaction=False) as pipe:
        for c in cities:
            pipe.get(keys.latest(c))
        got = pipe.execute() if cities else []
    return {c: int(v) for c, v in zip(cities, got) if v is not None}


def partitions(r, keys: Keys) -> list[int]:
    """The partitions that have window state."""
    return sorted(int(p) for p in r.smembers(keys.parts))


def published_slot(r, keys: Keys, city: str) -> int | None:
    """The newest slot of `city` whose outputs (forecasts, error, embeddings) are published: the ledger's
    `outs` set (stream.publication); None before the first publication."""
    top = r.zrevrange(keys.kept(city), 0, 0, withscores=True)
    return int(top[0][1]) if top else None


def watermarks(r, keys: Keys) -> dict[int, float]:
    """Partition -> max event time seen (epoch s)."""
    parts = partitions(r, keys)
    with r.pipeline(transaction=False) as pipe:
        for p in parts:
            pipe.hget(keys.clock(p), "wm")
        got = pipe.execute() if parts else []
    return {p: float(v) for p, v in zip(parts, got) if v is not None}


def _b(v) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode()


def _flow_values(vals: list, key: str) -> np.ndarray:
    """b"occ,in,out" values -> (N, 3) int64."""
    if not vals:
        return np.zeros((0, 3), dtype=np.int64)
    vals = list(map(_b, vals))
    flat = None
    if all(v.count(b",") == 2 for v in vals):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # older numpy warns instead of raising
                flat = np.fromstring(b",".join(vals), dtype=np.int64, sep=",")
        except ValueError:
            flat = None
    if flat is None or flat.size != 3 * len(vals):
        bad = next((v for v in vals if v.count(b",") != 2 or not v.replace(b",", b"").isdigit()), vals[0])
        raise ReadError(f"{key}: value {_s(bad)!r} is not 'occ,in,out' integers")
    return flat.reshape(len(vals), 3)  # (N, 3)


def _cell_ids(h: dict, key: str, size: int) -> np.ndarray:
    try:
        cells = np.array(list(map(int, h.keys())), dtype=np.int64)
    except ValueError as exc:
        raise ReadError(f"{key}: a field is not a cell id ({exc})") from exc
    if cells.min() < 0 or cells.max() >= size * size:
        raise ReadError(f"{key}: cell id outside 0..{size * size - 1}")
    return cells


def parse_flows(h: dict, key: str, size: int = GRID_SIZE) -> np.ndarray:
    """A flow hash (cell -> "occ,in,out") -> dense (3, size, size) int64, zero where a cell is absent."""
    grid = np.zeros((3, size * size), dtype=np.int64)
    if h:
        grid[:, _cell_ids(h, key, size)] = _flow_values(list(h.values()), key).T
    return grid.reshape(3, size, size)  # (C, y, x)


def flow_grid(r, keys: Keys, city: str, slot: int, size: int = GRID_SIZE) -> np.ndarray:
    """The city's assembled flows of a closed slot, dense (3, size, size); zeros for a slot with no key."""
    key = keys.flow(city, slot)
    return parse_flows(r.hgetall(key), key, size)


def _triple(doc, key: str) -> tuple[float, float, float]:
    """One forecast value: [occ, in, out], or an object with occ/in/out (or occupancy/inflow/outflow),
    or an object holding such a list under pred/forecast/y/counts/p."""
    if isinstance(doc, dict):
        for name in _PRED_NAMES:
            if isinstance(doc.get(name), list):
                return _triple(doc[name], key)
        got = []
        for names in _CHANNEL_NAMES:
            hit = next((doc[n] for n in names if n in doc), None)
            if hit is None:
                raise ReadError(f"{key}: forecast object has no field {names[0]!r} (fields: {sorted(doc)})")
            got.append(float(hit))
        return got[0], got[1], got[2]
    if isinstance(doc, (list, tuple)) and len(doc) >= 3:
        return float(doc[0]), float(doc[1]), float(doc[2])
    raise ReadError(f"{key}: forecast value {doc!r:.60} is neither [occ, in, out] nor an object")


def _triples(docs: list, key: str) -> np.ndarray:
    """Many forecast values -> (N, 3) float32: the common shapes in one comprehension, the rest one by one."""
    try:
        if isinstance(docs[0], dict) and "occ" in docs[0]:
            return np.array([(d["occ"], d["in"], d["out"]) for d in docs], dtype=np.float32)
        if isinstance(docs[0], list):
            return np.array([d[:3] for d in docs], dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        pass
    return np.asarray([_triple(d, key) for d in docs], dtype=np.float32)


def parse_forecasts(h: dict, key: str, size: int = GRID_SIZE) -> np.ndarray:
    """A forecast hash (cell -> JSON) -> dense (3, size, size) float32, NaN where no forecast was made."""
    grid = np.full((3, size * size), np.nan, dtype=np.float32)
    if h:
        cells = _cell_ids(h, key, size)
        try:
            docs = orjson.loads(b"[" + b",".join(map(_b, h.values())) + b"]")
        except orjson.JSONDecodeError as exc:
            raise ReadError(f"{key}: a value is not JSON ({exc})") from exc
        grid[:, cells] = _triples(docs, key).T
    return grid.reshape(3, size, size)  # (C, y, x)


def forecast_grid(r, keys: Keys, city: str, made_at: int, size: int = GRID_SIZE, horizon: int = 1) -> np.ndarray:
    """The forecast made at the close of `made_at` for slot made_at + horizon, dense (3, size, size), NaN = none."""
    key = keys.forecast_ahead(city, made_at, horizon)
    return parse_forecasts(r.hgetall(key), key, size)


def forecast_path(r, keys: Keys, city: str, cell: int, made_at: int, horizons: int = 4) -> np.ndarray:
    """One cell's forecast path made at the close of `made_at`: (horizons, 3), row h-1 for slot made_at + h, NaN = none."""
    with r.pipeline(transaction=False) as pipe:
        for h in range(1, horizons + 1):
            pipe.hget(keys.forecast_ahead(city, made_at, h), cell)
        got = pipe.execute()
    out = np.full((horizons, 3), np.nan)
    for h, v in enumerate(got, 1):
        if v is not None:
            out[h - 1] = _triple(orjson.loads(v), keys.forecast_ahead(city, made_at, h))
    return out


def _pick(doc: dict, names: tuple) -> float:
    for n in names:
        v = doc.get(n)
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, dict):  # {"model": {"mae": ...}}
            return _pick(v, ("mae", "all", "value"))
    return float("nan")


def errors(r, keys: Keys, city: str, last: int | None = None, horizon: int = 1) -> dict[str, np.ndarray]:
    """The live forecast error history, oldest first: {"slot", "model", "persistence"} arrays (MAE) of the
    forecasts made `horizon` slots before each slot.

    Each value is a JSON object with the model's and the persistence baseline's error, under
    model/mae/forecast and persistence/persistence_mae/baseline, per horizon under horizons/<h> (the
    top level is horizon 1); a missing one reads as NaN.
    """
    key = keys.errors(city)
    rows = []
    for s, v in r.hgetall(key).items():
        try:
            doc = orjson.loads(v)
        except orjson.JSONDecodeError as exc:
            raise ReadError(f"{key}: field {_s(s)} is not JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise ReadError(f"{key}: field {_s(s)} is not a JSON object")
        if horizon != 1 or isinstance(doc.get("horizons"), dict):
            doc = (doc.get("horizons") or {}).get(str(horizon)) or {}
        rows.append((int(s), _pick(doc, ("model", "mae", "forecast")),
                     _pick(doc, ("persistence", "persistence_mae", "baseline"))))
    rows.sort()
    if last is not None:
        rows = rows[-last:]
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    return {"slot": arr[:, 0].astype(np.int64), "model": arr[:, 1], "persistence": arr[:, 2]}


@dataclass(frozen=True)
class CellHistory:
    """One cell's recent slots: actuals (N, 3), the forecast made for each slot (N, 3, NaN = none)
    and the persistence baseline (the previous slot's actuals) (N, 3)."""

    slots: np.ndarray
    actual: np.ndarray
    forecast: np.ndarray
    persistence: np.ndarray


def cell_history(r, keys: Keys, city: str, cell: int, end: int, n: int = 48) -> CellHistory:
    """Actuals of `cell` in slots end-n+1..end, and the forecasts for those slots and end + 1.

    One pipelined round trip: HGET flow:<s> and HGET fc:<s-1> for each slot.
    """
    slots = np.arange(end - n + 1, end + 2, dtype=np.int64)  # the extra last slot: forecast only
    with r.pipeline(transaction=False) as pipe:
        for s in slots[:-1].tolist():
            pipe.hget(keys.flow(city, s), cell)
        for s in slots.tolist():
            pipe.hget(keys.forecast(city, s - 1), cell)
        got = pipe.execute()
    flows, fcs = got[: n], got[n:]
    actual = np.zeros((n + 1, 3), dtype=np.float64)
    actual[-1] = np.nan
    for i, v in enumerate(flows):
        if v is not None:
            actual[i] = _flow_values([v], keys.flow(city, int(slots[i])))[0]
    forecast = np.full((n + 1, 3), np.nan)
    for i, v in enumerate(fcs):
        if v is not None:
            forecast[i] = _triple(orjson.loads(v), keys.forecast(city, int(slots[i]) - 1))
    persistence = np.vstack([np.full((1, 3), np.nan), actual[:-1]])
    return CellHistory(slots, actual, forecast, persistence)


def embedding_uids(r, keys: Keys, city: str, limit: int | None = None) -> list[str]:
    """Uids that have an embedding in the city, sorted (by number when they are numbers); SCAN, not KEYS."""
    prefix = keys.embedding(city, "")
    uids = [_s(k)[len(prefix):] for k in r.scan_iter(match=prefix + "*", count=10_000)]
    uids.sort(key=lambda u: (0, int(u), u) if u.isdigit() else (1, 0, u))
    return uids if limit is None else uids[:limit]


def parse_embedding(v, key: str) -> np.ndarray:
    """An embedding value: the worker's object with `embedding_b64` (base64 of little-endian float32 or
    float16 bytes, `dtype`), a JSON list of floats, or an object holding one under embedding/emb/vector/e/v."""
    try:
        doc = orjson.loads(v)
    except orjson.JSONDecodeError as exc:
        raise ReadError(f"{key}: not JSON ({exc})") from exc
    if isinstance(doc, dict) and isinstance(doc.get("embedding_b64"), str):
        dtype = {"float32": "<f4", "float16": "<f2"}.get(doc.get("dtype", "float32"))
        if dtype is None:
            raise ReadError(f"{key}: field 'dtype' is {doc.get('dtype')!r}, expected float32 or float16")
        try:
            vec = np.frombuffer(base64.b64decode(doc["embedding_b64"], validate=True), dtype=dtype)
        except ValueError as exc:
            raise ReadError(f"{key}: field 'embedding_b64' is not base64 of {doc.get('dtype', 'float32')} ({exc})") from exc
        if not len(vec):
            raise ReadError(f"{key}: field 'embedding_b64' holds no values")
        return vec.astype(np.float32)
    if isinstance(doc, dict):
        doc = next((doc[n] for n in _VECTOR_NAMES if isinstance(doc.get(n), list)), None)
    if not isinstance(doc, list) or not doc:
        raise ReadError(f"{key}: no embedding vector (a JSON list, or an object with field 'embedding')")
    return np.asarray(doc, dtype=np.float32)


def embeddings(r, keys: Keys, city: str, uids: list[str], chunk: int = 2000) -> tuple[list[str], np.ndarray]:
    """The embeddings of `uids` (those that still exist), as (uids, (N, D) float32); MGET in chunks."""
    found, rows = [], []
    for i in range(0, len(uids), chunk):
        part = uids[i:i + chunk]
        names = [keys.embedding(city, u) for u in part]
        # Embedding keys spread over a cluster's nodes: one MGET per node there.
        for uid, v in zip(part, r.mget_nonatomic(names) if is_cluster(r) else r.mget(names)):
            if v is not None:
                found.append(uid)
                rows.append(parse_embedding(v, keys.embedding(city, uid)))
    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32)
    dims = {len(x) for x in rows}
    if len(dims) != 1:
        raise ReadError(f"{keys.embedding(city, '*')}: embeddings of different lengths {sorted(dims)}")
    return found, np.vstack(rows)  # (N, D)


def user_cells(r, keys: Keys, city: str, uids: list[str], end: int,
               size: int = WINDOW_SLOTS) -> dict[str, dict[int, int]]:
    """Each user's cells in the window ending at `end`: uid -> {slot: cell}, slots where the user was seen
    only. Reads the partitions' slot logs (stream.windows.wal; one pipelined round trip) and applies the
    windows' latest-event-time rule, so it shows what the worker holds."""
    from stream.windows import wal

    slots = list(window_slots(end, size))
    todo = [(p, s) for p in partitions(r, keys) for s in slots]
    with r.pipeline(transaction=False) as pipe:
        for p, s in todo:
            pipe.get(keys.log(p, city, s))
        got = pipe.execute() if uids and todo else []
    want = set(uids)
    best: dict[tuple[str, int], tuple[int, int]] = {}
    for (p, s), blob in zip(todo, got):
        if not blob:
            continue
        names, ts, cells = wal.decode(blob, keys.log(p, city, s))
        for i in [i for i, u in enumerate(names) if u in want]:
            v = (int(ts[i]), int(cells[i]))
            if best.get((names[i], s), (-1 << 62, 0)) < v:
                best[names[i], s] = v
    out: dict[str, dict[int, int]] = {u: {} for u in uids}
    for (u, s), (_, cell) in sorted(best.items(), key=lambda kv: kv[0][1]):
        out[u][s] = cell
    return out
