"""Parses newline-aligned CSV blocks into typed columns: pyarrow in bulk, line by line only where that fails.

A block that pyarrow parses whole is one row per line (no quoting, blank lines are errors), so
row i sits on line first+i and no line numbers are stored. A block it rejects (a non-integer, a
short row, a blank line) is cut into pieces at newlines and each piece retried, down to a few
kilobytes that are read by hand; that is where each bad row gets its line number and field, while the
good rows around it stay on the fast path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from training.readers.schema import Field
from training.readers.summary import BadRow

BY_HAND_BYTES = 4 << 10  # pieces this small that still fail are read line by line
FAN_OUT = 16  # a failing block is retried as this many pieces: few bad rows cost few re-parses
SERIAL_BYTES = 1 << 20  # below this, pyarrow's thread pool costs more than it saves


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
        self._read_serial = pcsv.ReadOptions(column_names=names, use_threads=False)
        self._as_strings = pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, null_values=[], strings_can_be_null=False
        )
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
        chunk = self._as_text(block, first)
        if chunk is not None:
            return chunk
        if len(block) <= BY_HAND_BYTES:
            return self._by_hand(bytes(block), first)
        parts = []
        for piece in _split(block, FAN_OUT):
            parts.append(self.parse(piece, first))
            first += parts[-1].n_lines
        return parts[0] if len(parts) == 1 else _concat(parts)

    def _fast(self, block: memoryview) -> dict | None:
        opts = self._read if len(block) > SERIAL_BYTES else self._read_serial
        try:
            table = pcsv.read_csv(
                pa.py_buffer(block), read_options=opts, parse_options=self._parse, convert_options=self._convert
            )
        except pa.ArrowInvalid:
            return None
        return {f.name: _column(table.column(f.name), f) for f in self.fields}

    def _as_text(self, block: memoryview, first: int) -> RawChunk | None:
        """Every field read as text, then checked and converted column by column; None if a float fails."""
        data = bytes(block)
        newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
        n_lines = len(newlines) + (0 if data.endswith(b"\n") else 1)
        skipped: list[tuple[int, str]] = []

        def keep_aside(row) -> str:
            skipped.append((row.number, row.text))
            return "skip"

        parse = pcsv.ParseOptions(quote_char=False, ignore_empty_lines=False, invalid_row_handler=keep_aside)
        # threads first; the row handler is told line numbers only when serial, so redo if it was called
        for opts in (self._read, self._read_serial):
            skipped.clear()
            try:
                table = pcsv.read_csv(pa.py_buffer(data), read_options=opts, parse_options=parse, convert_options=self._as_strings)
            except pa.ArrowInvalid:
                return None
            if all(num is not None for num, _ in skipped):
                break
        else:
            return None
        offsets = np.delete(np.arange(n_lines), [num - 1 for num, _ in skipped])
        if len(offsets) != table.num_rows:
            return None
        bad, blank = [], 0
        for num, text in skipped:
            if not text.strip():
                blank += 1
            else:
                bad.append(BadRow(self.path, first + num - 1, "", "column_count", self._count_detail(text.count(",") + 1)))
        texts = [table.column(f.name).combine_chunks() for f in self.fields]
        # pyarrow reads a blank line as a row of empty fields; tell it from ",,,," by its text
        empty = np.ones(len(offsets), dtype=bool)
        for t in texts:
            empty &= pc.equal(t, "").to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(empty):
            k = offsets[i]
            line = data[newlines[k - 1] + 1 if k else 0 : newlines[k] if k < len(newlines) else len(data)]
            empty[i] = not line.strip()
        blank += int(np.count_nonzero(empty))
        out_bad = empty.copy()
        cols = {}
        for f, t in zip(self.fields, texts):
            values, fault = _convert_text(t, f)
            if values is None:
                return None
            fault &= ~out_bad
            for i in np.flatnonzero(fault):
                bad.append(BadRow(self.path, first + int(offsets[i]), f.name, *f.parse(t[i].as_py().encode())[1]))
            out_bad |= fault
            cols[f.name] = values
        keep = ~out_bad
        cols = {k: (v.filter(pa.array(keep)) if isinstance(v, pa.Array) else v[keep]) for k, v in cols.items()}
        bad.sort(key=lambda r: r.line)
        return RawChunk(cols, first, n_lines, first + offsets[keep], bad, blank)

    def _count_detail(self, found: int) -> str:
        names = ",".join(f.name for f in self.fields)
        return f"expected {len(self.fields)} fields ({names}), found {found}"

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
                bad.append(BadRow(self.path, line, "", "column_count", self._count_detail(len(parts))))
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


def _split(block: memoryview, k: int) -> list[memoryview]:
    """About k pieces of whole lines (fewer when the lines are long)."""
    data = bytes(block)  # memoryview has no find; this copy is paid only on the failure path
    view = memoryview(data)
    pieces, start, step = [], 0, max(1, len(data) // k)
    while start < len(data):
        cut = data.find(b"\n", start + step - 1) if start + step < len(data) else -1
        end = len(data) if cut < 0 else cut + 1
        pieces.append(view[start:end])
        start = end
    return pieces


def _convert_text(text: pa.Array, f: Field) -> tuple:
    """(values, mask of fields that are not valid) for a text column; (None, None) if it cannot tell."""
    clean = np.zeros(len(text), dtype=bool)
    if f.kind == "str":
        return text, clean
    trimmed = pc.utf8_trim(text, " \t\r")
    try:  # most columns of a failing block are fine: one cast settles them
        return pc.cast(trimmed, f.arrow_type).to_numpy(zero_copy_only=False), clean
    except pa.ArrowInvalid:
        if f.kind == "float":
            return None, None
    # at most 18 digits always fits in int64; longer ones are left to the by-hand reader's message
    ok = pc.and_(pc.match_substring_regex(trimmed, r"^-?[0-9]{1,18}$"), pc.true_unless_null(trimmed))
    values = pc.cast(pc.if_else(ok, trimmed, "0"), pa.int64()).to_numpy(zero_copy_only=False)
    return values, ~ok.to_numpy(zero_copy_only=False)


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
