"""Dead letters: the reasons a ping is refused, and the record that carries it to the `pings-dlq` topic.

A dead letter's value is the original bytes of the refused message (for one ping inside a batch
message: that element re-encoded as JSON); its headers say why and where it came from:
  reason         one of REASONS
  detail         a human-readable sentence naming the field at fault
  source         topic/partition/offset of the message it came from
"""

from __future__ import annotations

from dataclasses import dataclass

NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
NAN = "nan"
BAD_TIMESTAMP = "bad_timestamp"
OUT_OF_GRID = "out_of_grid"
MASKED = "masked"
CONFLICT = "conflict"
OVERSIZE = "oversize"
LATE = "late"

REASONS = (NOT_JSON, NOT_OBJECT, MISSING_FIELD, WRONG_TYPE, NAN, BAD_TIMESTAMP, OUT_OF_GRID, MASKED, CONFLICT, OVERSIZE,
           LATE)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused ping or message, with the bytes to keep and why."""

    reason: str
    detail: str
    value: bytes
    key: bytes | None = None

    def headers(self, source: str) -> list[tuple[str, bytes]]:
        return [("reason", self.reason.encode()), ("detail", self.detail.encode()), ("source", source.encode())]
