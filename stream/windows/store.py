"""The WindowStore interface: what the worker needs from window storage, whatever keeps it."""

from __future__ import annotations

import abc

import numpy as np

from stream.windows.watermark import PartitionClock


class WindowStore(abc.ABC):
    """Per-partition event-time clocks, per-user slot cells, and per-cell flows of closed slots.

    Every write is idempotent: applying the same pings or closing the same slot twice leaves the
    same state, so at-least-once delivery from Kafka is enough.
    """

    @abc.abstractmethod
    async def clock(self, part: int) -> PartitionClock:
        """The partition's stored event-time state (empty for a partition never seen)."""

    @abc.abstractmethod
    async def apply(self, part: int, city: list[str], uid: list[str], slot: np.ndarray, ts: np.ndarray,
                    cell: np.ndarray, clock: PartitionClock) -> None:
        """Record accepted pings (latest event time per user and slot wins) and the new clock, atomically."""

    @abc.abstractmethod
    async def cities(self) -> list[str]:
        """Cities seen so far."""

    @abc.abstractmethod
    async def close_windows(self, part: int, city: str, slot: int) -> tuple[list[str], np.ndarray]:
        """Users the partition saw in `slot` and their cells in slots slot-7..slot: (uids, (N, 8) int, -1 = unseen)."""

    @abc.abstractmethod
    async def write_partial(self, part: int, city: str, slot: int, cells: np.ndarray, counts: np.ndarray) -> None:
        """The partition's share of a closed slot's flows: cells (K,), counts (K, 3)."""

    @abc.abstractmethod
    async def advance(self, part: int, closed_through: int, n_partitions: int) -> list[tuple[str, int]]:
        """Record that the partition closed every slot <= closed_through; returns (city, slot) newly assembled."""

    @abc.abstractmethod
    async def flows(self, city: str, slots: list[int]) -> dict[int, dict[int, tuple[int, int, int]]]:
        """Assembled flows: slot -> cell -> (occupancy, inflow, outflow)."""
