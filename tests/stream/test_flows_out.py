"""The flows topic's record format: one encode/decode pair, round-tripped."""

from __future__ import annotations

import numpy as np
import pytest

from models.grid import cell_id
from stream.flows_out import FIELDS, decode_flow, encode_flows


def test_flow_records_round_trip():
    cells = np.array([cell_id(3, 4), cell_id(200, 200)])
    counts = np.array([[5, 2, 1], [1, 0, 0]])
    records = encode_flows("B", 17, cells, counts)
    assert [k for k, _ in records] == [f"B:{c}".encode() for c in cells.tolist()]
    docs = [decode_flow(v) for _, v in records]
    assert docs[0] == {"city": "B", "cell": int(cells[0]), "x": 3, "y": 4, "slot": 17,
                       "occupancy": 5, "inflow": 2, "outflow": 1}
    assert [(d["x"], d["y"]) for d in docs] == [(3, 4), (200, 200)] and set(docs[1]) == set(FIELDS)


def test_a_record_without_a_field_names_it():
    with pytest.raises(ValueError, match="'inflow'"):
        decode_flow(b'{"city": "A", "cell": 1, "x": 2, "y": 1, "slot": 0, "occupancy": 1, "outflow": 0}')
