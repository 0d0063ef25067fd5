"""Parses newline-aligned CSV blocks into typed columns: pyarrow in bulk, line by line only where that fails.

A block that pyarrow parses whole is one row per line (no quoting, blank lines are errors), so
row i sits on line first+i and no line numbers are stored. A block it rejects (a non-integer, a
short row, a blank line) is halved at a newline and each half retried, down to a few kilobytes
that are read by hand; that is where each bad row gets its line number and field, while the
good rows around it stay on the fast path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from training.readers.schema import Field
from training.readers.summary import BadRow

BY_HAND_BYTES = 8 << 10


@dataclass
class RawChunk:
    """Typed columns of the rows that parsed, their line numbers, and the rows that did not."""

    cols: dict[str, np.ndarray | pa.Array]
    first: int  # line of row 0 when `lines` is None (rows are consecutive lines)
    n_lines: int  # lines of text this chunk covers
    lines: np.ndarray | None = None
    bad: list[BadRow] = field(default_factory=list)
    blank: int = 0

    def __len__(self) -> int:
        return len(next(iter(self.cols.values())))

    def line_numbers(self) -> np.ndarray:
        return self.lines if self.lines is not None else np.arange(self.first, self.first + len(self), dtype=np.int64)


class BlockParser:
    """Parses blocks of one file whose header gave the column order."""

    def __init__(self, path: str, fields: list[Field]):
        self.path = path
        self.fields = fields
        names = [f.name for f in fields]
        self._read = pcsv.ReadOptions(column_names=names, use_threads=True, block_size=2 << 20)
        # no quoting: integer data has none, and a stray quote must not swallow newlines
        self._parse = pcsv.ParseOptions(quote_char=False, ignore_empty_lines=False)
        self._convert = pcsv.ConvertOptions(
            column_types={f.name: f.arrow_type for f in fields}, null_values=[], strings_can_be_null=False
        )

    def parse(self, block: memoryview, first: int) -> RawChunk:
        """Rows of `block` (whole lines; its first line is line `first` of the file)."""
        cols = self._fast(block)
        if cols is not None:
            return RawChunk(cols, first, len(next(iter(cols.values()))))
        if len(block) <= BY_HAND_BYTES:
            return self._by_hand(bytes(block), first)
        mid = bytes(block[len(block) // 2 :]).find(b"\n") + len(block) // 2
        if mid + 1 >= len(block):  # one long line
            return self._by_hand(bytes(block), first)
        head = self.parse(block[: mid + 1], first)
        tail = self.parse(block[mid + 1 :], first + head.n_lines)
        return _concat([head, tail])

    def _fast(self, block: memoryview) -> dict | None:
        try:
            table = pcsv.read_csv(
                pa.py_buffer(block), read_options=self._read, parse_options=self._parse, convert_options=self._convert
            )
        except pa.ArrowInvalid:
            return None
        return {f.name: _column(table.column(f.name), f) for f in self.fields}

    def _by_hand(self, piece: bytes, first: int) -> RawChunk:
        values: list[list] = [[] for _ in self.fields]
        lines, bad, blank = [], [], 0
        nf = len(self.fields)
        raw_lines = piece.split(b"\n")
        if piece.endswith(b"\n"):
            raw_lines.pop()
        for i, raw in enumerate(raw_lines):
            line = first + i
            raw = raw.rstrip(b"\r")
            if not raw.strip():
                blank += 1
                continue
            parts = raw.split(b",")
            if len(parts) != nf:
                names = ",".join(f.name for f in self.fields)
                bad.append(BadRow(self.path, line, "", "column_count", f"expected {nf} fields ({names}), found {len(parts)}"))
                continue
            row = []
            for f, p in zip(self.fields, parts):
                v, err = f.parse(p)
                if err is not None:
                    bad.append(BadRow(self.path, line, f.name, err[0], err[1]))
                    break
                row.append(v)
            else:
                for col, v in zip(values, row):
                    col.append(v)
                lines.append(line)
        cols = {f.name: _typed(v, f) for f, v in zip(self.fields, values)}
        return RawChunk(cols, first, len(raw_lines), np.asarray(lines, dtype=np.int64), bad, blank)


def _column(col: pa.ChunkedArray, f: Field):
    if f.kind == "str":
        return col.combine_chunks()
    return col.to_numpy()


def _typed(values: list, f: Field):
    if f.kind == "str":
        return pa.array(values, type=pa.string())
    return np.asarray(values, dtype=f.numpy_type)


def _concat(parts: list[RawChunk]) -> RawChunk:
    cols = {}
    for name in parts[0].cols:
        pieces = [p.cols[name] for p in parts]
        cols[name] = pa.concat_arrays(pieces) if isinstance(pieces[0], pa.Array) else np.concatenate(pieces)
    lines = np.concatenate([p.line_numbers() for p in parts])
    bad = [b for p in parts for b in p.bad]
    return RawChunk(cols, parts[0].first, sum(p.n_lines for p in parts), lines, bad, sum(p.blank for p in parts))
