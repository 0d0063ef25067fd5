"""The offline flow tensor: DuckDB turns a YJMob-format dataset into dense (slot, cell, channel) counts, cached.

The SQL is the flow definition of `models/flows.py` (tests prove both give the same numbers):
LAG over each user's observations ordered by slot gives the previous observation, kept only when
it lies within the 7 slots before. The cache (counts.npy, cells.npy, poi.npy, meta.json) lives in
<cache-dir>/<file stem>/ and is rebuilt only when the source fingerprint changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.features import N_POI, poi_table
from models.flows import LOOKBACK, FlowCounts, densify
from models.grid import GRID_SIZE
from models.slots import SLOTS_PER_DAY
from mobstream.paths import data_dir, runs_dir
from mobstream.settings import opt
from training.exceptions import DataFormatError, TrainingError

log = logging.getLogger(__name__)
CACHE_FORMAT = 1
_MB = 1 << 20


@dataclass(frozen=True)
class FlowBuildSettings:
    data: Path
    poi: Path | None = None
    city: str | None = None  # default: the letter in city{X}_..., else "A"
    cache_dir: Path = Path("runs/flow_cache")
    rebuild: bool = False
    threads: int = 0  # 0: DuckDB's default (all cores)


@dataclass
class FlowData:
    """Dense flow counts (S, N, 3) for slots slot0.. and the sorted active cells; the POI table (G*G, 85)."""

    counts: np.ndarray
    cells: np.ndarray
    slot0: int
    poi: np.ndarray
    meta: dict = field(default_factory=dict)


def fingerprint(path: Path) -> str:
    """size + SHA-256 of the first and last MB and of 16 blocks of 64 KB spread between them.

    Content only (no mtime), so a byte-identical regeneration keeps its cache and its checkpoints;
    cheap on a multi-GB file.
    """
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for pos in [0, *np.linspace(_MB, max(_MB, size - _MB), 16, dtype=np.int64).tolist(), max(0, size - _MB)]:
            f.seek(pos)
            h.update(f.read(_MB if pos in (0, max(0, size - _MB)) else 64 << 10))
    return h.hexdigest()[:16]


def source_sql(path: Path) -> str:
    """A DuckDB table expression reading uid,d,t,x,y from CSV, CSV.gz or Parquet."""
    p = str(path).replace("'", "''")
    if path.suffix == ".parquet":
        return f"(SELECT uid, d, t, x, y FROM read_parquet('{p}'))"
    cols = "{'uid': 'BIGINT', 'd': 'INTEGER', 't': 'INTEGER', 'x': 'INTEGER', 'y': 'INTEGER'}"
    return f"read_csv('{p}', header = true, columns = {cols}, auto_detect = false)"


def flow_sql(src: str, size: int = GRID_SIZE) -> str:
    """Per (slot, cell): occupancy, inflow, outflow, plus `dup` (rows repeating a user's slot) and cell -2 for bad rows."""
    return f"""
    WITH obs AS (
      SELECT uid, d * {SLOTS_PER_DAY} + t AS slot,
             CASE WHEN x BETWEEN 1 AND {size} AND y BETWEEN 1 AND {size} AND t BETWEEN 0 AND {SLOTS_PER_DAY - 1}
                       AND d >= 0
                  THEN (y - 1) * {size} + (x - 1) ELSE -2 END AS cell
      FROM {src} WHERE NOT (x = 999 AND y = 999)
    ), steps AS (
      SELECT slot, cell,
             CASE WHEN lag(slot) OVER w >= slot - {LOOKBACK} THEN lag(cell) OVER w END AS prev,
             coalesce(lag(slot) OVER w = slot, false) AS dup
      FROM obs WINDOW w AS (PARTITION BY uid ORDER BY slot)
    ), parts AS (
      SELECT slot, cell, 1 AS occ, CASE WHEN prev <> cell THEN 1 ELSE 0 END AS inflow, 0 AS outflow,
             dup::INTEGER AS dup FROM steps
      UNION ALL
      SELECT slot, prev, 0, 0, 1, 0 FROM steps WHERE prev <> cell
    )
    SELECT slot::INTEGER AS slot, cell::INTEGER AS cell, sum(occ)::INTEGER AS occ, sum(inflow)::INTEGER AS inflow,
           sum(outflow)::INTEGER AS outflow, sum(dup)::INTEGER AS dup
    FROM parts GROUP BY slot, cell
    """


def _connect(threads: int):
    import duckdb

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")  # lets the window/aggregate stream without ordering buffers
    return con


def query_flows(path: Path, size: int = GRID_SIZE, threads: int = 0) -> FlowCounts:
    """Run the flow SQL on a dataset file; DataFormatError for bad rows or two rows in one user-slot."""
    import duckdb

    con = _connect(threads)
    src = source_sql(path)
    try:
        res = con.execute(flow_sql(src, size)).fetchnumpy()
    except duckdb.Error as exc:
        raise DataFormatError(f"{path}: cannot read as a uid,d,t,x,y dataset: {exc}") from exc
    bad = res["cell"] == -2
    if bad.any():
        row = con.execute(
            f"SELECT uid, d, t, x, y FROM {src} WHERE NOT (x = 999 AND y = 999) AND NOT (x BETWEEN 1 AND {size} "
            f"AND y BETWEEN 1 AND {size} AND t BETWEEN 0 AND {SLOTS_PER_DAY - 1} AND d >= 0) LIMIT 1"
        ).fetchone()
        n = int(res["occ"][bad].sum())
        raise DataFormatError(f"{path}: {n} rows have x,y outside 1..{size}, t outside 0..47 or d < 0; first: uid,d,t,x,y = {row}")
    if res["dup"].sum():
        raise DataFormatError(f"{path}: {int(res['dup'].sum())} rows repeat a (uid, d, t) already seen; the format allows one per user and slot")
    counts = np.stack([res["occ"], res["inflow"], res["outflow"]], axis=1)  # (K, 3)
    return FlowCounts(res["slot"].astype(np.int64), res["cell"].astype(np.int64), counts)


def read_poi(path: Path | None, size: int = GRID_SIZE) -> np.ndarray:
    """POI file (x, y, category, POI_count) -> (size*size, 85) counts; zeros when there is no file."""
    if path is None:
        return np.zeros((size * size, N_POI), dtype=np.float32)
    import duckdb

    p = str(path).replace("'", "''")
    try:
        df = duckdb.sql(f"SELECT * FROM read_csv('{p}', header = true)").df()
    except duckdb.Error as exc:
        raise DataFormatError(f"{path}: cannot read POI file: {exc}") from exc
    df.columns = [c.lower() for c in df.columns]
    need = ("x", "y", "category", "poi_count")
    if any(c not in df.columns for c in need):
        raise DataFormatError(f"{path}: POI header must be x,y,category,POI_count; got {','.join(df.columns)}")
    try:
        return poi_table(df["x"], df["y"], df["category"], df["poi_count"], size)
    except Exception as exc:
        raise DataFormatError(f"{path}: {exc}") from exc


def city_of(path: Path, city: str | None) -> str:
    if city:
        return city
    m = re.search(r"city([A-Za-z])_", path.name)
    return m.group(1).upper() if m else "A"


def _cache_path(s: FlowBuildSettings) -> Path:
    stem = s.data.name.split(".")[0]
    return s.cache_dir / f"{stem}-{city_of(s.data, s.city)}"


def build(s: FlowBuildSettings) -> FlowData:
    """Build the dense tensor and write the cache."""
    t0 = time.perf_counter()
    fc = query_flows(s.data, threads=s.threads)
    if not len(fc.slot):
        raise DataFormatError(f"{s.data}: no observations (every row masked or the file is empty)")
    cells = np.unique(fc.cell[fc.counts[:, 0] > 0])  # active = occupied at least once (outflow needs that too)
    slot0, n_slots = int(fc.slot.min()), int(fc.slot.max() - fc.slot.min() + 1)
    dtype = np.uint16 if fc.counts.max() < np.iinfo(np.uint16).max else np.int32
    counts = densify(fc, cells, slot0, n_slots, dtype=dtype)
    poi = read_poi(s.poi)
    meta = {
        "format": CACHE_FORMAT,
        "source": str(s.data),
        "fingerprint": fingerprint(s.data),
        "poi_source": str(s.poi) if s.poi else None,
        "poi_fingerprint": fingerprint(s.poi) if s.poi else None,
        "city": city_of(s.data, s.city),
        "grid_size": GRID_SIZE,
        "slot0": slot0,
        "n_slots": n_slots,
        "n_cells": int(len(cells)),
        "observations": int(fc.counts[:, 0].sum()),
        "dtype": str(counts.dtype),
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    out = _cache_path(s)
    out.mkdir(parents=True, exist_ok=True)
    for name, arr in (("counts", counts), ("cells", cells), ("poi", poi)):
        np.save(out / f"{name}.tmp.npy", arr)
        os.replace(out / f"{name}.tmp.npy", out / f"{name}.npy")
    (out / "meta.json").write_text(json.dumps(meta, indent=2))  # last, so a half-written cache never looks valid
    log.info("flow tensor %s: %d slots x %d cells in %.1fs -> %s", s.data, n_slots, len(cells), meta["build_seconds"], out)
    return FlowData(counts, cells, slot0, poi, meta)


def load_or_build(s: FlowBuildSettings) -> FlowData:
    """The cached tensor if its fingerprints match the source files, else a fresh build."""
    if not s.data.is_file():
        raise TrainingError(f"dataset {s.data} does not exist (setting --data / MOBSTREAM_DATA)")
    if s.poi is not None and not s.poi.is_file():
        raise TrainingError(f"POI file {s.poi} does not exist (setting --poi / MOBSTREAM_POI)")
    out = _cache_path(s)
    try:
        meta = json.loads((out / "meta.json").read_text())
        fresh = (
            not s.rebuild
            and meta.get("format") == CACHE_FORMAT
            and meta["fingerprint"] == fingerprint(s.data)
            and meta["poi_fingerprint"] == (fingerprint(s.poi) if s.poi else None)
        )
    except (OSError, ValueError, KeyError):
        fresh = False
    if not fresh:
        return build(s)
    log.info("flow tensor cache hit: %s", out)
    load = lambda name: np.load(out / f"{name}.npy")  # noqa: E731
    return FlowData(load("counts"), load("cells"), int(meta["slot0"]), load("poi"), meta)


# Options shared by `flow-build`, `train flow` and `evaluate flow` (declared once: same names, same variables).
DATA_OPT = opt(data_dir() / "synth" / "cityA_challengedata.csv", "flow_data", "Dataset file uid,d,t,x,y (CSV, CSV.gz or Parquet).")
POI_OPT = opt(data_dir() / "synth" / "POIdata_cityA.csv", "flow_poi", "POI file x,y,category,POI_count; 'none' for no POI features.")
CITY_OPT = opt(None, "city", "City label; default the letter in city{X}_..., else A.")
CACHE_OPT = opt(runs_dir() / "flow_cache", "flow_cache", "Folder of the cached flow tensors (one sub-folder per dataset).")
REBUILD_OPT = opt(False, "flow_rebuild", "Rebuild the flow tensor even when the cache matches the source.")


def build_settings(data: Path, poi: Path, city: str | None, cache_dir: Path, rebuild: bool) -> FlowBuildSettings:
    return FlowBuildSettings(Path(data), None if str(poi).lower() == "none" else Path(poi), city, Path(cache_dir), rebuild)


def command(
    data: Path = DATA_OPT,
    poi: Path = POI_OPT,
    city: str = CITY_OPT,
    cache_dir: Path = CACHE_OPT,
    rebuild: bool = REBUILD_OPT,
) -> None:
    """Build (or reuse) the flow tensor: per (cell, slot) occupancy, inflow, outflow, via DuckDB."""
    import typer

    m = load_or_build(build_settings(data, poi, city, cache_dir, rebuild)).meta
    typer.echo(
        f"city {m['city']}: {m['n_slots']} slots from slot {m['slot0']} x {m['n_cells']} active cells, "
        f"{m['observations']} observations, built in {m['build_seconds']} s (source fingerprint {m['fingerprint']})"
    )
