"""Dead letters: the reasons a ping is refused, and the record that carries it to the `pings-dlq` topic.

A dead letter's value is the original bytes of the refused message (for one ping inside a batch
message: that element re-encoded as JSON); its headers say why and where it came from:
  reason         one of REASONS
  detail         a human-readable sentence naming the field at fault
  source         topic/partition/offset of the message it came from
  cut            present (value b"1") when the value is a prefix of the original bytes: the original was
                 oversize, or the record was cut to fit the producer's request limit (detail gives the sizes)
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.record.default_records import DefaultRecordBatchBuilder

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


# Bounds on the parts of a dead letter other than its value, so a record always has room for some of the value.
KEY_MAX = 1024
DETAIL_MAX = 2048
LIMIT_MIN = 3 * KEY_MAX + 2 * DETAIL_MAX  # no producer limit below this leaves room for key, headers and value
CUT = ("cut", b"1")


def record_size(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> int:
    """The size the producer checks against its `max_request_size` (aiokafka's own upper bound for one record)."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)


def fit(d: DeadLetter, source: str, limit: int) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of `d`'s DLQ record, at most `limit` bytes as the producer counts them: key and
    detail are bounded, and the value keeps as many leading bytes as the rest leaves room for."""
    if limit < LIMIT_MIN:
        raise ValueError(f"dead-letter record limit {limit} is below {LIMIT_MIN} bytes")
    key = None if d.key is None else d.key[:KEY_MAX]
    detail = d.detail.encode(errors="backslashreplace")
    if len(detail) > DETAIL_MAX:
        detail = detail[: DETAIL_MAX - 3] + b"..."
    headers = [("reason", d.reason.encode()), ("detail", detail), ("source", source.encode()[:KEY_MAX])]
    value = d.value
    if d.reason == OVERSIZE or key != d.key:  # already a prefix of the original
        headers.append(CUT)
    if record_size(key, value, headers) > limit:
        headers[1] = ("detail", detail + f" (value of {len(value)} bytes cut to fit the dead-letter topic)".encode())
        if headers[-1] != CUT:
            headers.append(CUT)
        keep = len(value) - (record_size(key, value, headers) - limit)
        while record_size(key, value[:keep], headers) > limit:  # a guard: shortening never lengthens a varint
            keep -= 1
        value = value[:keep]
    return key, value, headers
