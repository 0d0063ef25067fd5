"""`Dataset`: what a file is (format from its header, container from its first bytes, city from its name)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from training.exceptions import DataFormatError
from training.readers.formats import FORMATS, Format
from training.readers.parquet import parquet_columns
from training.readers.source import container_of, read_header

DEFAULT_CITY = "A"
_CITY = re.compile(r"(?:^|[^a-z])city_?([a-z])(?:[_\-.]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Dataset:
    """A dataset file: `format` is yjmob, poi or gps; `container` csv, csv.gz or parquet."""

    path: Path
    format: str
    container: str
    city: str
    header: tuple[str, ...]

    @property
    def spec(self) -> Format:
        return FORMATS[self.format]


def city_of(path: Path) -> str:
    """City letter from names like cityB_challengedata.csv or POIdata_cityC.csv; "A" otherwise."""
    m = _CITY.search(path.name)
    return m.group(1).upper() if m else DEFAULT_CITY


def describe(path: str | Path, fmt: str = "auto", city: str | None = None) -> Dataset:
    """Detect a file's format from its header; raises DataFormatError naming the file and the header."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    container = container_of(path)
    header = parquet_columns(path) if container == "parquet" else read_header(path)
    where = f"{path}" if container == "parquet" else f"{path}:1"
    known = "; ".join(f"{f.name} ({','.join(f.columns)})" for f in FORMATS.values())
    if fmt == "auto":
        found = [f for f in FORMATS.values() if f.matches(header) or (container == "parquet" and _has(f, header))]
        if not found:
            raise DataFormatError(f"{where}: header {','.join(header)!r} is not one of the known formats: {known}")
        spec = found[0]
    elif fmt in FORMATS:
        spec = FORMATS[fmt]
        ok = _has(spec, header) if container == "parquet" else spec.matches(header)
        if not ok:
            raise DataFormatError(
                f"{where}: header {','.join(header)!r} does not match format {fmt} (expected {','.join(spec.columns)})"
            )
    else:
        raise DataFormatError(f"{path}: unknown format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    return Dataset(path, spec.name, container, (city or city_of(path)).upper(), tuple(header))


def _has(spec: Format, header: list[str]) -> bool:
    # Parquet columns are read by name, so extra columns (a cache's own additions) are fine
    return set(spec.columns) <= set(spec.canonical(header))
