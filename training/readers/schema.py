"""The column types a format declares, and how to parse one text field of each type by hand."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

# What pyarrow's int64 converter accepts, so the slow path agrees with the fast one.
_INT = re.compile(rb"[ \t]*-?[0-9]+[ \t]*")
_I64 = 2**63


@dataclass(frozen=True)
class Field:
    """One column: its name and kind ("int", "float" or "str")."""

    name: str
    kind: str

    @property
    def arrow_type(self) -> pa.DataType:
        return {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}[self.kind]

    @property
    def numpy_type(self):
        return {"int": np.int64, "float": np.float64, "str": object}[self.kind]

    def parse(self, raw: bytes):
        """(value, None) or (None, (reason, detail)) for one text field."""
        if self.kind == "int":
            if not _INT.fullmatch(raw):
                return None, ("not_integer", f"{_show(raw)} is not an integer")
            v = int(raw)
            if not -_I64 <= v < _I64:
                return None, ("out_of_range", f"{v} does not fit in 64 bits")
            return v, None
        if self.kind == "float":
            try:
                return float(raw), None
            except ValueError:
                return None, ("not_number", f"{_show(raw)} is not a number")
        return raw.decode("utf-8", errors="replace").strip(), None


def _show(raw: bytes) -> str:
    return "empty value" if not raw.strip() else repr(raw.decode("utf-8", errors="replace"))
