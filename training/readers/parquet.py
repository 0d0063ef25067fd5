"""Reads Parquet files in record batches into the same typed columns as CSV; rows are numbered from 1."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from training.exceptions import DataFormatError
from training.readers.csvparse import RawChunk
from training.readers.schema import Field
from training.readers.summary import BadRow

BATCH_ROWS = 1 << 20


def parquet_columns(path) -> list[str]:
    try:
        return [n.lower() for n in pq.ParquetFile(str(path)).schema_arrow.names]
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(f"{path}: not a readable Parquet file: {exc}") from exc


def parquet_chunks(path, fields: list[Field], batch_rows: int = BATCH_ROWS) -> Iterator[RawChunk]:
    pf = pq.ParquetFile(str(path))
    by_lower = {n.lower(): n for n in pf.schema_arrow.names}
    names = [by_lower[f.name] for f in fields]
    first = 1
    for batch in _batches(pf, path, batch_rows, names):
        n = batch.num_rows
        bad_at: dict[int, BadRow] = {}
        cols = {}
        for f, name in zip(fields, names):
            values, bad, detail = _convert(batch.column(name), f)
            cols[f.name] = values
            for i in np.flatnonzero(bad):
                if int(i) not in bad_at:  # the first field at fault names the row
                    bad_at[int(i)] = BadRow(str(path), first + int(i), f.name, detail[0], detail[1], "row")
        lines = None
        if bad_at:
            keep = np.ones(n, dtype=bool)
            keep[list(bad_at)] = False
            cols = {k: (v.filter(pa.array(keep)) if isinstance(v, pa.Array) else v[keep]) for k, v in cols.items()}
            lines = np.flatnonzero(keep) + first
        yield RawChunk(cols, first, n, lines, [bad_at[i] for i in sorted(bad_at)])
        first += n


def _batches(pf: pq.ParquetFile, path, batch_rows: int, names: list[str]) -> Iterator[pa.RecordBatch]:
    try:
        yield from pf.iter_batches(batch_size=batch_rows, columns=names)
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(f"{path}: cannot read Parquet data: {exc}") from exc


def _convert(arr: pa.Array, f: Field) -> tuple:
    """(values, bad mask, (reason, detail)) for one column of one batch."""
    n = len(arr)
    missing = arr.is_null().to_numpy(zero_copy_only=False)
    if f.kind == "str":
        return pc.cast(arr, pa.string()), missing, ("missing", "value is missing")
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        try:
            arr = pc.cast(arr, f.arrow_type)
        except pa.ArrowInvalid:
            return np.zeros(n, f.numpy_type), np.ones(n, bool), ("not_number", "text that is not a number")
    if f.kind == "float" or pa.types.is_integer(arr.type):
        values = pc.cast(arr, f.arrow_type, safe=False).fill_null(0).to_numpy(zero_copy_only=False)
        return values, missing, ("missing", "value is missing")
    # an int column stored as float: whole, finite values only
    x = pc.cast(arr, pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(x) | (x != np.floor(x)) | missing
    with np.errstate(invalid="ignore"):
        values = np.where(bad, 0, x).astype(np.int64)
    return values, bad, ("not_integer", "value is not a whole number")
