"""The `flows` topic: every assembled slot's measured flows, one record per active cell, the numbers in Redis.

Key `<city>:<cell>`; value JSON {"city", "cell", "x", "y", "slot", "occupancy", "inflow", "outflow"}:
self-describing, so any Kafka client can check what the stream measured against its own count.
"""

from __future__ import annotations

import numpy as np
import orjson

from models.grid import cell_xy
from stream import metrics as m
from stream.keys import Keys

FIELDS = ("city", "cell", "x", "y", "slot", "occupancy", "inflow", "outflow")


def encode_flows(city: str, slot: int, cells: np.ndarray, counts: np.ndarray) -> list[tuple[bytes, bytes]]:
    """(key, value) records of one assembled slot: cells (n,), counts (n, 3) occupancy, inflow, outflow.

    Values come from one bytes template (a dict and orjson per cell cost twice as much, and a 40,000-cell
    slot is one record per cell); `decode_flow` reads them back as JSON, the round-trip test holds them equal.
    """
    cells = np.asarray(cells, dtype=np.int64)
    xs, ys = cell_xy(cells)
    head = orjson.dumps({"city": city})[:-1] + b',"cell":%d,"x":%d,"y":%d,"slot":' + str(int(slot)).encode()
    fmt = head + b',"occupancy":%d,"inflow":%d,"outflow":%d}'
    key = city.encode().replace(b"%", b"%%") + b":%d"
    cs = cells.tolist()
    return list(zip([key % c for c in cs],
                    [fmt % row for row in zip(cs, xs.tolist(), ys.tolist(), *np.asarray(counts).T.tolist())]))


def decode_flow(value: bytes) -> dict:
    """A flows record's value -> its fields (raises ValueError naming a missing field)."""
    doc = orjson.loads(value)
    missing = [f for f in FIELDS if f not in doc]
    if missing:
        raise ValueError(f"flows record lacks field {missing[0]!r}")
    return doc


class FlowsPublisher:
    """On assembly: read each slot's packed flows (`flowj`) and queue them on the flows topic; returns once
    they are delivered, so the ledger records the slot as published only then."""

    def __init__(self, redis, producer, keys: Keys, topic: str) -> None:
        self.redis, self.producer, self.keys, self.topic = redis, producer, keys, topic

    async def on_assembled(self, made: list[tuple[str, int]]) -> None:
        from stream.outputs import flush, parse_flow, produce_all

        async with self.redis.pipeline(transaction=False) as pipe:
            for city, slot in made:
                pipe.get(self.keys.flow_packed(city, slot))
            got = await pipe.execute()
        n = 0
        for (city, slot), raw in zip(made, got):
            if raw is None:  # trimmed already (a ledger replay long after): nothing left to publish
                continue
            cells, counts = parse_flow(raw)
            records = encode_flows(city, slot, cells, counts)
            produce_all(self.producer, self.topic, records)
            n += len(records)
        if n:
            await flush(self.producer, f"flows of {made[-1][0]} slot {made[-1][1]}")
            m.FLOWS.inc(n)
