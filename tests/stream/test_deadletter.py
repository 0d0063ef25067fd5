"""Dead-letter records always fit the producer's limit, and delivery retries until every record is on the topic."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError
from hypothesis import given, settings
from hypothesis import strategies as st

from stream import metrics as m
from stream.deadletter import DETAIL_MAX, KEY_MAX, LIMIT_MIN, DeadLetter, fit, record_size
from stream.deadletter_send import DeadLetterSender

FAUST_LIMIT = 1_000_000  # faust's producer_max_request_size default, the worker's limit
MIB = 1_048_576  # --max-message-bytes default and aiokafka's max_request_size default
SRC = "pings/0/10-20"


def check(d: DeadLetter, limit: int):
    key, value, headers = fit(d, SRC, limit)
    h = dict(headers)
    assert record_size(key, value, headers) <= limit
    assert d.value.startswith(value) and h["reason"] == d.reason.encode() and h["source"] == SRC.encode()
    assert ("cut" in h) == (len(value) < len(d.value) or key != d.key or d.reason == "oversize")
    return key, value, h


@pytest.mark.parametrize("limit", [FAUST_LIMIT, MIB, LIMIT_MIN])
@pytest.mark.parametrize("delta", [-300, -200, -100, -1, 0, 1, 100])
def test_values_around_the_limit_fit(limit, delta):
    size = limit + delta
    key, value, h = check(DeadLetter("not_json", "not JSON", b"v" * size, b"42"), limit)
    if "cut" in h:  # cut only as far as needed: the record is within a few bytes of the limit
        assert limit - 8 <= record_size(key, value, list(h.items())) and b"cut to fit" in h["detail"]
    else:
        assert value == b"v" * size


@pytest.mark.parametrize("size", [256, MIB - 1, MIB, 3_000_000, 10_000_000])
def test_oversize_letters_fit_and_say_they_were_cut(size):
    """pings.py cuts an oversize message to --max-message-bytes; any of those values must still fit."""
    _, value, h = check(DeadLetter("oversize", f"message of {size + 1} bytes (limit {size})", b"x" * size), FAUST_LIMIT)
    assert h["cut"] == b"1" and len(value) == size if size < FAUST_LIMIT else len(value) > FAUST_LIMIT - 5000


def test_header_heavy_records_fit():
    big_key, big_detail = b"k" * 2_000_000, "field uid " + "\udcff" * 50_000  # a lone surrogate, too
    key, value, h = check(DeadLetter("wrong_type", big_detail, b"v" * 900_000, big_key), FAUST_LIMIT)
    assert key == big_key[:KEY_MAX] and len(h["detail"]) <= DETAIL_MAX + 100 and h["cut"] == b"1"
    assert len(value) == 900_000


def test_invalid_utf8_is_kept_byte_for_byte():
    raw = b"\xff\xfe{\"uid\": \xc3\x28}" * 3
    key, value, h = check(DeadLetter("not_json", "not JSON", raw, b"\xff\xff"), FAUST_LIMIT)
    assert value == raw and key == b"\xff\xff" and "cut" not in h


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 30_000), st.one_of(st.none(), st.integers(0, 3000)), st.integers(0, 5000),
       st.sampled_from(["not_json", "oversize", "late"]), st.integers(LIMIT_MIN, 40_000))
def test_any_letter_fits_any_limit(n_value, n_key, n_detail, reason, limit):
    key = None if n_key is None else b"\x80" * n_key
    check(DeadLetter(reason, "d" * n_detail, b"\xc3" * n_value, key), limit)


class Topic:
    """A DLQ topic whose producer fails as told: `refuse(n)` at the send, `fail(n)` at delivery, or a broker
    that refuses records over `broker_limit` bytes."""

    def __init__(self, refuse: int = 0, fail: int = 0, broker_limit: int | None = None) -> None:
        self.refuse, self.fail, self.broker_limit = refuse, fail, broker_limit
        self.got: list[tuple] = []

    async def send(self, key, value, headers):
        if self.refuse:
            self.refuse -= 1
            raise ProducerSendError("Error while sending: no metadata") from KafkaTimeoutError()
        fut = asyncio.get_running_loop().create_future()
        if self.fail:
            self.fail -= 1
            fut.set_exception(KafkaTimeoutError("batch expired"))
        elif self.broker_limit and record_size(key, value, headers) > self.broker_limit:
            fut.set_exception(MessageSizeTooLargeError())
        else:
            self.got.append((key, value, dict(headers)))
            fut.set_result(len(self.got))
        return fut


def counted(reason: str) -> float:
    return m.DEAD_LETTERS.labels(reason)._value.get()


def deliver(topic: Topic, letters, limit=FAUST_LIMIT) -> list[float]:
    sleeps: list[float] = []

    async def sleep(s):
        sleeps.append(s)
    asyncio.run(DeadLetterSender(topic.send, limit, sleep=sleep).deliver(letters, SRC))
    return sleeps


def test_producer_errors_are_retried_with_backoff_and_nothing_is_lost():
    letters = [DeadLetter("nan", f"ping {i}", b"%d" % i) for i in range(5)]
    before = counted("nan")
    topic = Topic(refuse=3, fail=4)
    sleeps = deliver(topic, letters)
    assert sorted(v for _, v, _ in topic.got) == sorted(d.value for d in letters)
    assert counted("nan") - before == 5  # counted = delivered, each once
    assert sleeps == [0.1, 0.2][: len(sleeps)] and sleeps


def test_a_broker_that_refuses_large_records_gets_them_cut_further():
    topic = Topic(broker_limit=300_000)
    before = counted("oversize")
    deliver(topic, [DeadLetter("oversize", "big", b"q" * MIB), DeadLetter("oversize", "small", b"q" * 10)])
    assert len(topic.got) == 2 and counted("oversize") - before == 2
    big = next(v for _, v, h in topic.got if h["detail"].startswith(b"big"))
    assert 200_000 < len(big) <= 250_000  # 1,000,000 -> 500,000 -> 250,000


def test_a_stop_does_not_end_the_retries(caplog):
    topic = Topic(refuse=6)
    sleeps: list[float] = []

    async def sleep(s):
        sleeps.append(s)
    sender = DeadLetterSender(topic.send, FAUST_LIMIT, sleep=sleep, stopping=lambda: True)
    asyncio.run(sender.deliver([DeadLetter("nan", "x", b"1")], SRC))
    assert len(topic.got) == 1 and sum(sleeps) == pytest.approx(0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 3.2)
    assert sum("the stop waits for 1 undelivered" in r.getMessage() for r in caplog.records) == 1
