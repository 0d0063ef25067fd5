"""GridSpec mapping at the edges of the grid and of each cell."""

import math

import numpy as np
import pytest

from models.exceptions import GridError
from models.grid import GridSpec, cell_id, cell_xy, in_grid, is_masked


def test_cell_centres_round_trip_every_corner():
    g = GridSpec()
    for x, y in [(1, 1), (200, 1), (1, 200), (200, 200), (100, 57)]:
        lat, lon = g.cell_center(x, y)
        assert g.to_cell(float(lat), float(lon)) == (x, y)


def test_edges_of_the_grid():
    g = GridSpec(origin_lat=10.0, origin_lon=20.0)
    assert g.to_cell(10.0, 20.0) == (1, 1)  # the south-west corner belongs to cell (1, 1)
    with pytest.raises(GridError, match="outside"):
        g.to_cell(9.99999, 20.0)
    with pytest.raises(GridError, match="outside"):
        g.to_cell(10.0, 19.99999)
    # the north-east edge is exclusive: 200 cells of 500 m = 100 km
    lat_top = 10.0 + 100_000 / (math.radians(1) * 6_371_008.8)
    with pytest.raises(GridError):
        g.to_cell(lat_top + 1e-9, 20.001)
    x, y, ok = g.to_cells([lat_top - 1e-6, float("nan")], [20.001, 20.0])
    assert ok.tolist() == [True, False] and y[0] == 200


def test_not_finite_and_bad_spec():
    g = GridSpec()
    with pytest.raises(GridError, match="not finite"):
        g.to_cell(float("nan"), 139.5)
    with pytest.raises(GridError, match="origin"):
        GridSpec(origin_lat=95.0)


def test_ids_and_masks():
    x = np.array([1, 200, 999, 0])
    y = np.array([1, 200, 999, 5])
    assert in_grid(x, y).tolist() == [True, True, False, False]
    assert is_masked(x, y).tolist() == [False, False, True, False]
    cid = cell_id(np.array([1, 200, 3]), np.array([1, 200, 2]))
    assert cid.tolist() == [0, 39999, 202]
    assert [a.tolist() for a in cell_xy(cid)] == [[1, 200, 3], [1, 200, 2]]
