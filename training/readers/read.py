"""The reader: validated column chunks of any supported file, strict (stop at the first bad row) or lenient."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from models.grid import GridSpec
from models.slots import DEFAULT_ORIGIN
from training.exceptions import DataFormatError
from training.readers.csvparse import BlockParser, RawChunk
from training.readers.dataset import Dataset, describe
from training.readers.formats import Context, Format
from training.readers.parquet import parquet_chunks
from training.readers.source import BLOCK_BYTES, blocks, open_text, split_header
from training.readers.summary import MAX_EXAMPLES, BadRow, ReadSummary

Columns = dict[str, np.ndarray]


def read_chunks(
    source: str | Path | Dataset,
    fmt: str = "auto",
    *,
    strict: bool = True,
    summary: ReadSummary | None = None,
    grid: GridSpec | None = None,
    origin: int = DEFAULT_ORIGIN,
    block_bytes: int = BLOCK_BYTES,
    cells: bool = True,
) -> Iterator[Columns]:
    """Yield dicts of numpy columns (about `block_bytes` of text each) holding only valid rows.

    yjmob chunks: uid, d, t, x, y (int64) and masked (bool; x=y=999 rows are kept and flagged).
    poi: x, y, category, poi_count. gps: uid, ts, lat, lon, x, y, slot, d, t.
    Strict: raise DataFormatError at the first bad row. Lenient: skip bad rows and count them in
    `summary` (pass one in to read it afterwards). cells=False keeps gps rows outside the grid.
    """
    ds = source if isinstance(source, Dataset) else describe(source, fmt)
    summary = summary if summary is not None else ReadSummary()
    summary.path, summary.format = str(ds.path), ds.format
    ctx = Context(grid or GridSpec(), origin, cells)
    checker = _Checker(ds, ctx, strict, summary)
    for raw in _raw_chunks(ds, block_bytes):
        cols = checker.apply(raw)
        if _length(cols):
            yield cols


def read_all(source: str | Path | Dataset, fmt: str = "auto", **kw) -> tuple[Columns, ReadSummary]:
    """The whole file as one dict of columns (for small files), and its summary."""
    summary = kw.pop("summary", None) or ReadSummary()
    parts = list(read_chunks(source, fmt, summary=summary, **kw))
    if not parts:
        ds = source if isinstance(source, Dataset) else describe(source, fmt)
        parts = [_empty(ds.spec, kw.get("grid"), kw.get("origin", DEFAULT_ORIGIN))]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, summary


def read_records(path: str | Path) -> Columns:
    """A whole YJMob/HuMob `uid,d,t,x,y` file (CSV, CSV.gz or Parquet), strictly validated: a missing
    file or a bad row raises DataFormatError naming the file (and line and field)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file (generate the demo city with `mobstream generate`)")
    cols, _ = read_all(path, "yjmob")
    return cols


def _empty(spec: Format, grid, origin) -> Columns:
    cols = {f.name: np.zeros(0, dtype=f.numpy_type) for f in spec.fields}
    if "timestamp" in cols:
        cols["timestamp"] = pa.array([], type=pa.string())
    return spec.check(cols, Context(grid or GridSpec(), origin))[0]


def _raw_chunks(ds: Dataset, block_bytes: int) -> Iterator[RawChunk]:
    if ds.container == "parquet":
        yield from parquet_chunks(ds.path, list(ds.spec.fields))
        return
    by_name = {f.name: f for f in ds.spec.fields}
    with open_text(ds.path) as stream:
        header, rest = split_header(stream, ds.path)
        parser = BlockParser(str(ds.path), [by_name[c] for c in ds.spec.canonical(header)])
        line = 2  # the header is line 1
        for block in blocks(stream, rest, ds.path, block_bytes):
            raw = parser.parse(block, line)
            line += raw.n_lines
            yield raw


class _Checker:
    """Applies a format's checks and its one-row-per-key rule to raw chunks, in file order."""

    def __init__(self, ds: Dataset, ctx: Context, strict: bool, summary: ReadSummary):
        self.spec, self.ctx, self.strict, self.summary = ds.spec, ctx, strict, summary
        self.path = str(ds.path)
        self.unit = "row" if ds.container == "parquet" else "line"
        self.prev_key: tuple | None = None

    def apply(self, raw: RawChunk) -> Columns:
        out, checks = self.spec.check(raw.cols, self.ctx)
        counts = Counter(b.key for b in raw.bad)
        found = list(raw.bad)
        bad = np.zeros(len(raw), dtype=bool)
        for c in checks:
            bad |= c.mask
        lines = raw.lines
        if bad.any():
            lines = raw.line_numbers()
            taken = np.zeros(len(raw), dtype=bool)
            for c in checks:
                idx = np.flatnonzero(c.mask & ~taken)
                taken[idx] = True
                if len(idx):
                    counts[f"{c.reason}:{c.field}"] += len(idx)
                # only the first few of each reason are spelled out: the earliest bad row is among them
                for i in idx[:MAX_EXAMPLES]:
                    msg = c.template.format(**_row(raw.cols, i))
                    found.append(BadRow(self.path, int(lines[i]), c.field, c.reason, msg, self.unit))
            out = {k: v[~bad] for k, v in out.items()}
            lines = lines[~bad]
        if self.spec.key and len(out[self.spec.key[0]]):
            dup = self._repeats(out)
            if dup.any():
                nums = lines if lines is not None else np.arange(raw.first, raw.first + len(dup))
                idx = np.flatnonzero(dup)
                key = ",".join(self.spec.key)
                counts[f"duplicate:{key}"] += len(idx)
                for i in idx[:MAX_EXAMPLES]:
                    vals = ", ".join(f"{k}={out[k][i]}" for k in self.spec.key)
                    found.append(BadRow(self.path, int(nums[i]), key, "duplicate", f"a second record for {vals}", self.unit))
                out = {k: v[~dup] for k, v in out.items()}
        if counts:
            if self.strict:
                raise min(found, key=lambda r: r.line).error()
            self.summary.add_bad(counts, found)
        self.summary.rows += len(raw) + len(raw.bad)
        self.summary.blank_lines += raw.blank
        self.summary.good += _length(out)
        if "masked" in out:
            self.summary.masked += int(np.count_nonzero(out["masked"]))
        return out

    def _repeats(self, out: Columns) -> np.ndarray:
        """True for a row whose key equals the previous valid row's (the files are sorted by key)."""
        keys = [out[k] for k in self.spec.key]
        dup = np.zeros(len(keys[0]), dtype=bool)
        same = np.ones(len(keys[0]) - 1, dtype=bool)
        for k in keys:
            same &= k[1:] == k[:-1]
        dup[1:] = same
        if self.prev_key is not None:
            dup[0] = all(int(k[0]) == p for k, p in zip(keys, self.prev_key))
        self.prev_key = tuple(int(k[-1]) for k in keys)
        return dup


def _length(cols: Columns) -> int:
    return len(next(iter(cols.values())))


def _row(cols: dict, i: int) -> dict:
    return {k: (v[i].as_py() if isinstance(v, pa.Array) else v[i].item()) for k, v in cols.items()}
