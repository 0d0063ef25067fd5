"""Reading the workers' Prometheus endpoints: scrape, parse the text format, sum over workers (pure parts first)."""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Snapshot:
    """The workers' metrics summed over every endpoint that answered, at wall time `at`."""

    at: float
    pings: float = 0.0
    accepted: float = 0.0
    lag: float = 0.0
    dead: dict[str, float] = field(default_factory=dict)
    close_sum: float = 0.0
    close_count: float = 0.0
    mae: dict[str, float] = field(default_factory=dict)
    up: int = 0
    down: list[str] = field(default_factory=list)


def add_text(snap: Snapshot, text: str) -> Snapshot:
    """Fold one endpoint's exposition text into the snapshot (sums counters and lag across workers)."""
    dead = defaultdict(float, snap.dead)
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "mobstream_pings_total":
                snap.pings += s.value
                if s.labels.get("outcome") == "accepted":
                    snap.accepted += s.value
            elif s.name == "mobstream_consumer_lag_messages":
                snap.lag += s.value
            elif s.name == "mobstream_dead_letters_total":
                dead[s.labels.get("reason", "?")] += s.value
            elif s.name == "mobstream_slot_close_seconds_sum":
                snap.close_sum += s.value
            elif s.name == "mobstream_slot_close_seconds_count":
                snap.close_count += s.value
            elif s.name == "mobstream_forecast_mae" and s.labels.get("horizon", "1") == "1":
                # Every worker assembles some slots; the gauge of any one is the city's last error.
                snap.mae[s.labels.get("model", "?")] = s.value
    snap.dead = dict(dead)
    snap.up += 1
    return snap


def scrape(urls: tuple[str, ...], timeout: float = 1.0, clock=time.time) -> Snapshot:
    """GET every URL (short timeout: a dead worker must not stall the page) and sum what answered."""
    snap = Snapshot(at=clock())
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                add_text(snap, resp.read().decode("utf-8", "replace"))
        except (OSError, ValueError) as exc:
            snap.down.append(f"{url} ({getattr(exc, 'reason', exc)})")
    return snap


@dataclass(frozen=True)
class Rates:
    """What changed between two snapshots: per-second rates and the mean slot-close latency."""

    at: float
    pings_per_s: float
    accepted_per_s: float
    lag: float
    close_ms: float | None


def rates(prev: Snapshot, cur: Snapshot) -> Rates:
    dt = max(cur.at - prev.at, 1e-9)
    closes = cur.close_count - prev.close_count
    # Counters restart at zero with a worker: a negative delta reads as no progress, not a negative rate.
    return Rates(cur.at, max(cur.pings - prev.pings, 0) / dt, max(cur.accepted - prev.accepted, 0) / dt, cur.lag,
                 (cur.close_sum - prev.close_sum) / closes * 1000 if closes > 0 else None)
