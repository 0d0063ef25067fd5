"""Read-only views of the stream's Redis state (layout: `stream.keys`), for the dashboard and tools.

Every function takes a synchronous `redis.Redis` client and a `Keys`, issues reads only (GET, HGET,
HGETALL, HMGET, MGET, SCAN, pipelines of those) and returns plain numpy arrays or dicts. Flows come
back dense: an array (3, size, size) of occupancy, inflow and outflow, row = y - 1, column = x - 1.

The forecast, embedding and error values are the worker's records (stream.records decodes them); a value
that is not one raises ReadError naming its key.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from models.grid import GRID_SIZE
from models.slots import WINDOW_SLOTS, window_slots
from stream import records
from stream.exceptions import StreamError
from stream.keys import Keys
from stream.redis_client import is_cluster

CHANNELS = ("occupancy", "inflow", "outflow")


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


def _forecasts(raws: list[bytes], key: str) -> np.ndarray:
    try:
        return records.decode_forecasts(raws)  # (N, 3)
    except records.RecordError as exc:
        raise ReadError(f"{key}: {exc}") from exc


def parse_forecasts(h: dict, key: str, size: int = GRID_SIZE) -> np.ndarray:
    """A forecast hash (cell -> JSON) -> dense (3, size, size) float32, NaN where no forecast was made."""
    grid = np.full((3, size * size), np.nan, dtype=np.float32)
    if h:
        cells = _cell_ids(h, key, size)
        grid[:, cells] = _forecasts(list(map(_b, h.values())), key).T
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
            out[h - 1] = _forecasts([v], keys.forecast_ahead(city, made_at, h))[0]
    return out


def errors(r, keys: Keys, city: str, last: int | None = None, horizon: int = 1) -> dict[str, np.ndarray]:
    """The live forecast error history, oldest first: {"slot", "model", "persistence"} arrays (MAE) of the
    forecasts made `horizon` slots before each slot.

    Each value is an error record (stream.records.error_doc); a null or absent error reads as NaN.
    """
    key = keys.errors(city)
    rows = []
    for s, v in r.hgetall(key).items():
        try:
            doc = records.decode_error(v, horizon)
        except records.RecordError as exc:
            raise ReadError(f"{key}: field {_s(s)}: {exc}") from exc
        rows.append((int(s), doc["model"], doc["persistence"]))
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
            forecast[i] = _forecasts([v], keys.forecast(city, int(slots[i]) - 1))[0]
    persistence = np.vstack([np.full((1, 3), np.nan), actual[:-1]])
    return CellHistory(slots, actual, forecast, persistence)


def embedding_uids(r, keys: Keys, city: str, limit: int | None = None) -> list[str]:
    """Uids that have an embedding in the city, sorted (by number when they are numbers); SCAN, not KEYS."""
    prefix = keys.embedding(city, "")
    uids = [_s(k)[len(prefix):] for k in r.scan_iter(match=prefix + "*", count=10_000)]
    uids.sort(key=lambda u: (0, int(u), u) if u.isdigit() else (1, 0, u))
    return uids if limit is None else uids[:limit]


def parse_embedding(v, key: str) -> np.ndarray:
    """An embedding record (stream.records.embedding_docs) -> its vector (dim,) float32."""
    try:
        return records.decode_embedding(v)[1]
    except records.RecordError as exc:
        raise ReadError(f"{key}: {exc}") from exc


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
    from stream.windows.tables import latest_per_user

    slots = list(window_slots(end, size))
    todo = [(p, s) for p in partitions(r, keys) for s in slots]
    with r.pipeline(transaction=False) as pipe:
        for p, s in todo:
            pipe.get(keys.log(p, city, s))
        got = pipe.execute() if uids and todo else []
    want = np.asarray(uids, dtype=str)
    rows: dict[int, list] = {s: [] for s in slots}
    for (p, s), blob in zip(todo, got):
        if blob:
            names, ts, cells = wal.decode(blob, keys.log(p, city, s))
            names = np.asarray(names, dtype=str)
            keep = np.isin(names, want)
            rows[s].append((names[keep], ts[keep], cells[keep]))
    out: dict[str, dict[int, int]] = {u: {} for u in uids}
    for s in slots:
        if rows[s]:
            users, _, cells = latest_per_user(*(np.concatenate(col) for col in zip(*rows[s])))
            for u, c in zip(users.tolist(), cells.tolist()):
                out[u][s] = c
    return out
