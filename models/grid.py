"""The 500 m grid: cell ids, the masked cell, and `GridSpec`, which maps lat/lon to cells and back.

Cells are 1-based (x, y) in 1..200 as in YJMob100K; x grows east, y grows north from the
south-west corner `origin`. (999, 999) marks a masked record and is never a location.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.exceptions import GridError

GRID_SIZE = 200
CELL_METERS = 500.0
MASKED = 999
EARTH_RADIUS_M = 6_371_008.8


def in_grid(x, y, size: int = GRID_SIZE):
    """True where (x, y) is a real cell (1..size); works on scalars and arrays."""
    return (x >= 1) & (x <= size) & (y >= 1) & (y <= size)


def is_masked(x, y):
    return (x == MASKED) & (y == MASKED)


def cell_id(x, y, size: int = GRID_SIZE):
    """Dense 0-based cell index (y-1)*size + (x-1), for arrays and tensors."""
    return (y - 1) * size + (x - 1)


def cell_xy(cid, size: int = GRID_SIZE):
    """Inverse of `cell_id`: (x, y), 1-based."""
    return cid % size + 1, cid // size + 1


def cell_distance_km(x1, y1, x2, y2, cell_m: float = CELL_METERS):
    """Euclidean distance between cell centres in km (HuMob convention)."""
    return np.hypot(np.asarray(x1) - x2, np.asarray(y1) - y2) * (cell_m / 1000.0)


@dataclass(frozen=True)
class GridSpec:
    """A square grid of `size` x `size` cells of `cell_m` metres whose south-west corner is `origin`.

    Uses a local equirectangular projection about the origin: metre-accurate over a 100 km city.
    """

    origin_lat: float = 35.30
    origin_lon: float = 139.20
    cell_m: float = CELL_METERS
    size: int = GRID_SIZE

    def __post_init__(self) -> None:
        if not (-85.0 <= self.origin_lat <= 85.0) or not (-180.0 <= self.origin_lon <= 180.0):
            raise GridError(f"GridSpec origin ({self.origin_lat}, {self.origin_lon}) is not a valid lat/lon")
        if not self.cell_m > 0 or self.size < 1:
            raise GridError(f"GridSpec cell_m={self.cell_m} and size={self.size} must be positive")

    @property
    def _m_per_deg_lat(self) -> float:
        return math.radians(1.0) * EARTH_RADIUS_M

    @property
    def _m_per_deg_lon(self) -> float:
        return self._m_per_deg_lat * math.cos(math.radians(self.origin_lat))

    def to_cells(self, lat, lon) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vectorised lat/lon -> (x, y, ok). `ok` is False for non-finite or out-of-grid points."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            fx = np.floor((lon - self.origin_lon) * self._m_per_deg_lon / self.cell_m) + 1
            fy = np.floor((lat - self.origin_lat) * self._m_per_deg_lat / self.cell_m) + 1
            ok = np.isfinite(fx) & np.isfinite(fy) & in_grid(fx, fy, self.size)
        x = np.where(ok, fx, 0).astype(np.int64)
        y = np.where(ok, fy, 0).astype(np.int64)
        return x, y, ok

    def to_cell(self, lat: float, lon: float) -> tuple[int, int]:
        """One point -> (x, y); raises GridError saying why a point has no cell."""
        if not (math.isfinite(lat) and math.isfinite(lon)):
            raise GridError(f"lat/lon ({lat}, {lon}) is not finite")
        x, y, ok = self.to_cells([lat], [lon])
        if not ok[0]:
            raise GridError(
                f"lat/lon ({lat}, {lon}) lies outside the {self.size}x{self.size} grid "
                f"of {self.cell_m:g} m cells whose south-west corner is ({self.origin_lat}, {self.origin_lon})"
            )
        return int(x[0]), int(y[0])

    def cell_center(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Centre (lat, lon) of cells (x, y)."""
        lat = self.origin_lat + (np.asarray(y, dtype=np.float64) - 0.5) * self.cell_m / self._m_per_deg_lat
        lon = self.origin_lon + (np.asarray(x, dtype=np.float64) - 0.5) * self.cell_m / self._m_per_deg_lon
        return lat, lon
