"""Slot and event-time labels for the page: slot -> day/slot-of-day and its wall-clock window (UTC)."""

from __future__ import annotations

import datetime as dt

from models.slots import SLOT_SECONDS, dt_from_slot, slot_start


def wall(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%a %Y-%m-%d %H:%M UTC")


def slot_label(slot: int, origin: int) -> str:
    """'slot 1234 (day 25, t 34): Fri 2026-01-30 17:00-17:30 UTC'."""
    d, t = dt_from_slot(slot)
    start = slot_start(slot, origin)
    end = dt.datetime.fromtimestamp(start + SLOT_SECONDS, dt.timezone.utc).strftime("%H:%M")
    return f"slot {slot} (day {d}, t {t}): {wall(start)[:-4]}–{end} UTC"


def short(slot: int, origin: int) -> str:
    """'Fri 17:00' for chart axes."""
    return dt.datetime.fromtimestamp(slot_start(slot, origin), dt.timezone.utc).strftime("%a %H:%M")
