"""The event-loop lag monitor: a timer that measures how late the loop wakes it (the longest pause matters)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from typing import Callable

from stream import metrics as m


class LoopLag:
    """Pauses of the event loop: each timer wake-up's delay into a histogram, the last `window` s' longest into a gauge."""

    def __init__(self, interval: float = 0.02, window: float = 60.0, clock: Callable[[], float] = time.perf_counter):
        self.interval, self.window, self.clock = interval, window, clock
        self.recent: deque[tuple[float, float]] = deque()  # (when, pause), pauses decreasing from the left

    def record(self, now: float, pause: float) -> float:
        """Count one pause; returns the longest of the window."""
        m.LOOP_LAG.observe(pause)
        while self.recent and self.recent[-1][1] <= pause:
            self.recent.pop()  # a shorter pause that ended earlier can never be the window's longest again
        self.recent.append((now, pause))
        while self.recent[0][0] < now - self.window:
            self.recent.popleft()
        longest = self.recent[0][1]
        m.LOOP_LAG_MAX.set(longest)
        return longest

    async def run(self) -> None:
        while True:
            t0 = self.clock()
            await asyncio.sleep(self.interval)
            now = self.clock()
            self.record(now, max(0.0, now - t0 - self.interval))


def freeze_startup_heap() -> None:
    """Take every object alive now (modules, Faust, torch and the loaded models: ~230,000 with both models)
    out of the cyclic collector's reach (gc.freeze). A full collection walks them all holding the GIL, a
    45-170 ms pause of the loop on a 2-core host whichever thread triggers it; objects made later are still
    collected. Call once everything long-lived is loaded."""
    gc.collect()
    gc.freeze()
