"""Raw bytes of a dataset file: container detection (CSV, gzip, Parquet), the header, newline-aligned blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from training.exceptions import DataFormatError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
BLOCK_BYTES = 16 << 20


def container_of(path: Path) -> str:
    """"parquet", "csv.gz" or "csv", from the first bytes (the name may lie)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot open: {exc.strerror or exc}") from exc
    if magic == PARQUET_MAGIC:
        return "parquet"
    if magic[:2] == GZIP_MAGIC:
        return "csv.gz"
    return "csv"


def open_text(path: Path) -> pa.NativeFile:
    """A stream of the file's (decompressed) bytes."""
    raw = pa.OSFile(str(path), "rb")
    if container_of(path) == "csv.gz":
        return pa.CompressedInputStream(raw, "gzip")
    return raw


def _read(stream: pa.NativeFile, n: int, path: Path) -> bytes:
    try:
        return stream.read(n)
    except (OSError, pa.ArrowException) as exc:
        # a truncated or corrupt gzip member surfaces here, mid-file
        raise DataFormatError(f"{path}: cannot decompress or read: {exc}") from exc


def split_header(stream: pa.NativeFile, path: Path) -> tuple[list[str], bytes]:
    """The header's column names (stripped, lower-case) and the bytes already read after it."""
    buf = b""
    while b"\n" not in buf:
        data = _read(stream, 1 << 16, path)
        if not data:
            break
        buf += data
    if not buf.strip():
        raise DataFormatError(f"{path}: empty file: expected a header line")
    head, _, rest = buf.partition(b"\n")
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    return [c.strip().lower() for c in text.split(",")], rest


def read_header(path: Path) -> list[str]:
    with open_text(path) as stream:
        return split_header(stream, path)[0]


def blocks(stream: pa.NativeFile, carry: bytes, path: Path, block_bytes: int = BLOCK_BYTES) -> Iterator[memoryview]:
    """Blocks of whole lines (the last one may lack its newline); slices, not copies."""
    while True:
        data = _read(stream, block_bytes, path)
        if not data:
            break
        buf = carry + data if carry else data
        cut = buf.rfind(b"\n")
        if cut < 0:
            carry = buf
            continue
        view = memoryview(buf)
        carry = bytes(view[cut + 1 :])
        yield view[: cut + 1]
    if carry:
        yield memoryview(carry)
