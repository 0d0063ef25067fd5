"""stream.faust_batches against the pinned faust-streaming: the internals it leans on, and batch acks -> commits."""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections import namedtuple
from importlib.metadata import version

import faust
import pytest

from stream.faust_batches import FAUST_VERSION, RELIES_ON, Batch, BatchConsumer, deliver_in_batches

# sha256 (16 hex digits) of the source of every internal in RELIES_ON, as in faust-streaming 0.15.3.
PINNED = {
    "faust.transport.consumer:Consumer._wait_next_records": "6218e1969a636b3f",
    "faust.transport.consumer:Consumer.getmany": "4b168d84882a70d6",
    "faust.transport.consumer:Consumer.ack": "5fcf41cf45153475",
    "faust.transport.consumer:Consumer._new_offset": "1d2c7ea89a7ad4f1",
    "faust.transport.consumer:Consumer.wait_empty": "e4662fe24f094819",
    "faust.transport.conductor:Conductor._update_tp_index": "e8e3ac9025ef44f7",
    "faust.transport.conductor:ConductorCompiler.build": "837cf521368c1ee4",
    "faust.streams:Stream._c_aiter": "fa44582a5882e9df",
    "faust.types.tuples:Message.ack": "4751b72c4ed84153",
    "faust.types.tuples:ConsumerMessage.on_final_ack": "45d670b6a8ac4bd0",
}

Record = namedtuple("Record", "offset timestamp timestamp_type key value")


def _source_hash(ref: str) -> str:
    mod, qual = ref.split(":")
    obj = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def test_faust_is_the_pinned_version():
    assert version("faust-streaming") == FAUST_VERSION, (
        f"faust-streaming {version('faust-streaming')} is installed; stream/faust_batches.py was written against "
        f"{FAUST_VERSION}: re-read the internals in RELIES_ON, then update the pin and tests/stream/test_faust_batches.py")


@pytest.mark.parametrize("ref", RELIES_ON)
def test_the_faust_internals_batch_delivery_relies_on_are_unchanged(ref):
    assert _source_hash(ref) == PINNED[ref], (
        f"{ref} changed in this faust-streaming: stream/faust_batches.py relies on it (see its module doc); "
        f"check what changed, adapt the module, then record the new hash here")


def _consumer(tmp_path):
    app = faust.App("t-batches", broker="kafka://127.0.0.1:1", store="memory://", datadir=str(tmp_path))
    topic = app.topic("pings", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    deliver_in_batches(app, topic, max_batch=100)
    consumer = app.consumer
    assert isinstance(consumer, BatchConsumer) and consumer.batch_topics == {"pings"}
    app.topics._acking_topics.add("pings")
    return app, consumer


def _batch(app, first: int, last: int, handled=True, generation=None) -> Batch:
    from faust.types import TP

    records = [Record(o, 1_767_571_200_000 + o, 0, b"k", b"{}") for o in range(first, last + 1)]
    b = Batch(TP("pings", 0), records, first, app.consumer_generation_id if generation is None else generation)
    b.handled = handled
    return b


async def test_a_handled_batch_acks_its_whole_offset_range_and_commits_past_it(tmp_path):
    from faust.types import TP

    app, c = _consumer(tmp_path)
    tp = TP("pings", 0)
    b = _batch(app, 10, 19)
    assert b.messages()[0] == (b"k", b"{}", 1_767_571_200_010) and b.offset == 19 and b.timestamp == 1_767_571_200.019
    b.first = 7  # offsets 7-9 skipped by the fetch (e.g. transaction markers) are covered too
    assert b.ack(c) is True
    assert sorted(c._acked[tp]) == list(range(7, 20))
    assert c._new_offset(tp) == 20  # what Consumer.commit would commit


async def test_unhandled_or_stale_batches_commit_nothing(tmp_path):
    from faust.types import TP

    app, c = _consumer(tmp_path)
    tp = TP("pings", 0)
    assert _batch(app, 0, 4, handled=False).ack(c) is False  # the agent raised: Faust acks, we do not
    assert _batch(app, 5, 9, generation=app.consumer_generation_id - 1).ack(c) is False  # fetched before a rebalance
    assert not c._acked[tp] and c._new_offset(tp) is None
    assert _batch(app, 10, 14).ack(c) is False  # 0-4 never processed: nothing after them commits
    assert not c._acked[tp] and c._new_offset(tp) is None
    app.consumer_generation_id += 1  # a rebalance seeks back to the committed offset: acks count again
    assert _batch(app, 0, 4).ack(c) is True and c._new_offset(tp) == 5
