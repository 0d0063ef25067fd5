"""The data report: what a dataset holds (users, days, sampling, mobility, busiest cells, rhythm) and its bad rows.

Rows come from the validated readers (so bad rows are counted by reason, with lines) and are
written chunk by chunk to a temporary Parquet file; DuckDB aggregates it within a memory limit,
spilling to the temporary folder, so files of any size run in bounded memory.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa

from models.grid import CELL_METERS, GridSpec
from models.slots import DEFAULT_ORIGIN
from training.readers import Dataset, ReadSummary, describe, read_chunks

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
TOP = 10
_DIST = "avg({v}), quantile_cont({v}, 0.1), quantile_cont({v}, 0.5), quantile_cont({v}, 0.9), max({v})"


def data_report(
    path: str | Path,
    fmt: str = "auto",
    *,
    strict: bool = False,
    city: str | None = None,
    grid: GridSpec | None = None,
    origin: int = DEFAULT_ORIGIN,
    memory_limit: str = "2GB",
) -> dict:
    """The report of one file as plain data (JSON-ready)."""
    import duckdb

    ds = describe(path, fmt, city)
    summary = ReadSummary()
    with tempfile.TemporaryDirectory(prefix="mobstream-report-") as tmp:
        con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": tmp})
        try:
            _load(con, ds, summary, strict, grid, origin, tmp)
            body = _poi(con) if ds.format == "poi" else _records(con, grid or GridSpec())
        finally:
            con.close()
    head = {"file": str(ds.path), "format": ds.format, "container": ds.container, "city": ds.city}
    return {**head, **body, "reader": summary.to_dict()}


def _load(con, ds: Dataset, summary: ReadSummary, strict: bool, grid, origin: int, tmp: str) -> None:
    """Validated chunks -> a temporary Parquet file (row group by row group) -> the DuckDB view `rec`."""
    import pyarrow.parquet as pq

    if ds.format == "poi":
        schema = pa.schema([(c, pa.int64()) for c in ("x", "y", "category", "poi_count")])
    else:
        schema = pa.schema([(c, pa.int64()) for c in ("uid", "d", "t", "x", "y")] + [("masked", pa.bool_())])
    path = str(Path(tmp) / "records.parquet")
    with pq.ParquetWriter(path, schema, compression="snappy") as out:
        for chunk in read_chunks(ds, strict=strict, summary=summary, grid=grid, origin=origin):
            n = len(chunk[schema.names[0]])
            out.write_table(pa.table({c: chunk[c] if c in chunk else pa.repeat(False, n) for c in schema.names}, schema=schema))
    con.execute(f"CREATE VIEW rec AS SELECT * FROM read_parquet('{path}')")


def _dist(row) -> dict:
    keys = ("mean", "p10", "median", "p90", "max")
    return {k: (None if v is None else round(float(v), 4)) for k, v in zip(keys, row)}


def _records(con, grid: GridSpec) -> dict:
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    rows, masked, users, days, dmin, dmax = q(
        "SELECT count(*), count(*) FILTER (masked), count(DISTINCT uid), count(DISTINCT d), min(d), max(d) FROM rec"
    )[0]
    user_days, *per_day = q(
        f"SELECT count(*), {_DIST.format(v='n')} FROM "
        "(SELECT count(*) AS n FROM rec WHERE NOT masked GROUP BY uid, d)"
    )[0]
    km = grid.cell_m / 1000.0
    per_user = q(
        f"SELECT {_DIST.format(v='cells')}, {_DIST.format(v='rg')} FROM "
        f"(SELECT count(DISTINCT x * 100000 + y) AS cells, sqrt(var_pop(x) + var_pop(y)) * {km} AS rg "
        "FROM rec WHERE NOT masked GROUP BY uid)"
    )[0]
    busiest = q(
        "SELECT x, y, count(*) AS records, count(DISTINCT uid) AS users FROM rec WHERE NOT masked "
        f"GROUP BY x, y ORDER BY records DESC, x, y LIMIT {TOP}"
    )
    hours = dict(q("SELECT t // 2, count(*) FROM rec GROUP BY 1"))
    weekdays = dict(q("SELECT d % 7, count(*) FROM rec GROUP BY 1"))
    return {
        "records": rows,
        "masked_records": masked,
        "masked_share": round(masked / rows, 6) if rows else 0.0,
        "users": users,
        "days": days,
        "day_range": [dmin, dmax],
        "user_days": user_days,
        "obs_per_user_day": _dist(per_day),
        "cells_per_user": _dist(per_user[:5]),
        "radius_of_gyration_km": _dist(per_user[5:]),
        "busiest_cells": [{"x": x, "y": y, "records": r, "users": u} for x, y, r, u in busiest],
        "by_hour": [hours.get(h, 0) for h in range(24)],
        "by_weekday": {WEEKDAYS[i]: weekdays.get(i, 0) for i in range(7)},
    }


def _poi(con) -> dict:
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    rows, cells, cats, total = q(
        "SELECT count(*), count(DISTINCT x * 100000 + y), count(DISTINCT category), coalesce(sum(poi_count), 0) FROM rec"
    )[0]
    top_cells = q(
        "SELECT x, y, sum(poi_count) AS pois, count(DISTINCT category) AS categories FROM rec "
        f"GROUP BY x, y ORDER BY pois DESC, x, y LIMIT {TOP}"
    )
    top_cats = q(f"SELECT category, sum(poi_count) AS pois, count(*) AS cells FROM rec GROUP BY 1 ORDER BY pois DESC, 1 LIMIT {TOP}")
    return {
        "records": rows,
        "cells": cells,
        "categories": cats,
        "poi_total": int(total),
        "busiest_cells": [{"x": x, "y": y, "pois": int(p), "categories": c} for x, y, p, c in top_cells],
        "top_categories": [{"category": c, "pois": int(p), "cells": n} for c, p, n in top_cats],
    }
