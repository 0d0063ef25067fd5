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
    async def state(self, part: int) -> tuple[PartitionClock, list[str]]:
        """The partition's stored event-time state (empty for a partition never seen) and the cities seen."""

    @abc.abstractmethod
    async def refresh_cities(self) -> list[str]:
        """Every city any partition has seen (a slot close covers them all), read fresh."""

    def forget(self, part: int) -> None:
        """Drop whatever this process holds of a partition (it was revoked)."""

    @abc.abstractmethod
    async def apply(self, part: int, city: list[str], uid: list[str], slot: np.ndarray, ts: np.ndarray,
                    cell: np.ndarray, clock: PartitionClock) -> None:
        """Record accepted pings (latest event time per user and slot wins) and the new clock, atomically."""

    @abc.abstractmethod
    async def close_windows(self, part: int, city_slots: list[tuple[str, int]],
                            full: bool = True) -> list[tuple[list[str], np.ndarray]]:
        """For each (city, slot): users the partition saw there and their cells in slots slot-7..slot
        as (uids, (N, 8) int, -1 = unseen). full=False may leave slots older than each user's most
        recent earlier observation unread (-1): enough for flows, not for embeddings."""

    @abc.abstractmethod
    async def finish_close(self, part: int, partials: list[tuple[str, int, np.ndarray, np.ndarray]],
                           closed_through: int, n_partitions: int, purge: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Write the partition's shares of closed slots (city, slot, cells (K,), counts (K, 3)), record that it
        closed every slot <= closed_through, forget (city, slot)s no window needs; returns the (city, slot)s
        this call assembled (all partitions closed them). One round trip."""

    @abc.abstractmethod
    async def flows(self, city: str, slots: list[int]) -> dict[int, dict[int, tuple[int, int, int]]]:
        """Assembled flows: slot -> cell -> (occupancy, inflow, outflow)."""
