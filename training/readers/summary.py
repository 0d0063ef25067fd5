"""What a read found wrong: one `BadRow` per malformed row, and the `ReadSummary` of a whole file."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from training.exceptions import DataFormatError

MAX_EXAMPLES = 10


@dataclass(frozen=True)
class BadRow:
    """One malformed row: where it is (1-based line, the header is line 1), the field and why."""

    path: str
    line: int
    field: str
    reason: str
    detail: str
    unit: str = "line"  # Parquet has no lines: its rows are counted 1-based from the first data row

    @property
    def key(self) -> str:
        """The counting key, e.g. `out_of_range:t`."""
        return f"{self.reason}:{self.field}" if self.field else self.reason

    def message(self) -> str:
        where = f"{self.path}:{self.line}" if self.unit == "line" else f"{self.path}: row {self.line}"
        field = f" field {self.field}:" if self.field else ""
        return f"{where}:{field} {self.detail}"

    def error(self) -> DataFormatError:
        return DataFormatError(self.message())


@dataclass
class ReadSummary:
    """Counts for one file; lenient reads fill it as they go, strict reads stop at the first bad row."""

    path: str = ""
    format: str = ""
    rows: int = 0  # data rows seen (blank lines excluded)
    good: int = 0
    masked: int = 0
    blank_lines: int = 0
    bad: Counter = field(default_factory=Counter)
    examples: list[BadRow] = field(default_factory=list)

    @property
    def bad_rows(self) -> int:
        return sum(self.bad.values())

    def add_bad(self, counts: Counter, examples: list[BadRow]) -> None:
        """Count bad rows by reason; keep the first few (in file order) as examples."""
        self.bad.update(counts)
        self.examples.extend(sorted(examples, key=lambda r: r.line)[: MAX_EXAMPLES - len(self.examples)])

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "rows": self.rows,
            "good": self.good,
            "masked": self.masked,
            "blank_lines": self.blank_lines,
            "bad_rows": self.bad_rows,
            "bad_by_reason": dict(sorted(self.bad.items())),
            "examples": [
                {"line": r.line, "unit": r.unit, "field": r.field, "reason": r.reason, "message": r.message()}
                for r in self.examples
            ],
        }
