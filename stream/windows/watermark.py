"""Event-time bookkeeping per partition (pure): which pings are late, and which slots a batch closes.

Watermark = max event time seen minus the allowed lateness. Slot s is closed once the watermark
reaches the start of slot s+1, i.e. s < slot_of(watermark). A ping is judged against the watermark
left by the pings before it in its partition, so the verdict depends only on the partition's order:
the same with one worker or many.

With repartitioning (stream.repartition), a partition also applies pings other partitions forwarded
to it; each source judged them against its own watermark and then sent its max event time along
(a marker, after the pings). The partition closes a slot only once its own watermark and every
source's forwarded one have passed it (the minimum, as Kafka Streams and Flink take over inputs), so
no forwarded ping can arrive for a slot already closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.slots import DEFAULT_ORIGIN, slot_of, slots_of


@dataclass(frozen=True)
class PartitionClock:
    """A partition's event-time state: the max event time of its own pings, the first slot not yet closed,
    the oldest slot it accepted a ping for, and the max event time each other partition forwarded."""

    max_ts: float | None = None
    next_close: int | None = None
    first: int | None = None
    inputs: dict[int, float] = field(default_factory=dict)


def frontier(max_ts: float | None, inputs: dict[int, float], sources) -> float | None:
    """The event time every input has reached: the partition's own max and each source's forwarded one;
    None until all of them have one."""
    if max_ts is None or any(q not in inputs for q in sources):
        return None
    return min([max_ts, *(inputs[q] for q in sources)])


def open_slot(max_ts: float | None, lateness: float, origin: int = DEFAULT_ORIGIN) -> int | None:
    """The oldest slot still open under the watermark left by `max_ts` (None before any event)."""
    return None if max_ts is None else slot_of(max_ts - lateness, origin)


def classify(ts: np.ndarray, clock: PartitionClock, lateness: float,
             origin: int = DEFAULT_ORIGIN) -> tuple[np.ndarray, float | None]:
    """Late mask for pings in arrival order, and the partition's new max event time.

    late[i] is True when ping i's slot was already closed by the watermark of the pings before it.
    """
    if len(ts) == 0:
        return np.zeros(0, dtype=bool), clock.max_ts
    first = -np.inf if clock.max_ts is None else clock.max_ts
    before = np.maximum.accumulate(np.concatenate(([first], ts[:-1])))  # (N,) max ts before ping i
    finite = np.isfinite(before)
    closed_below = slots_of(np.where(finite, before - lateness, 0.0), origin)  # (N,)
    late = finite & (slots_of(ts, origin) < closed_below)
    return late, float(max(first, ts.max()))


def slots_to_close(clock: PartitionClock, new_max: float | None, first_slot: int | None,
                   lateness: float, origin: int = DEFAULT_ORIGIN) -> tuple[range, int | None]:
    """Slots closed by moving the max event time to `new_max`, and the partition's new next_close.

    `first_slot` is the oldest slot the partition accepted a ping for; it starts the clock when the
    partition has never closed a slot.
    """
    upto = open_slot(new_max, lateness, origin)
    if upto is None:
        return range(0), clock.next_close
    start = clock.next_close
    if start is None:
        start = upto if first_slot is None else min(first_slot, upto)
    if upto <= start:
        return range(0), start
    return range(start, upto), upto
