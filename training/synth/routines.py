"""Daily plans: for every user-day, the main activity (work, school, night shift) and up to five
irregular trips, as time intervals at places. Pure numpy over a block of users x days.

A plan is a small table per user-day of J intervals in priority order (trips first, then the main
activity); the user is at the first interval that covers a slot, else at home. Each interval also
has an origin and a travel time, so slots just after a departure can be observed on the way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.slots import SLOTS_PER_DAY
from training.synth import agents as A
from training.synth.city import City
from training.synth.gravity import distance_km, local_pick

N_TRIPS = 5
J = N_TRIPS + 2  # trips, then main activity B (evening part), then A
KINDS = ("lunch", "after_work", "day", "evening", "morning", "field")
LUNCH, AFTER_WORK, DAY, EVENING, MORNING, FIELD = range(6)

# Mean irregular trips a day and their kinds, per profile, on working days and on free days.
TRIP_RATE_WORK = np.array([0.9, 1.1, 0.7, 0.6, 0.0, 0.0, 5.0])
TRIP_RATE_FREE = np.array([1.5, 1.5, 1.1, 1.4, 1.4, 1.9, 1.4])
KIND_WORK = np.array([
    [0.35, 0.35, 0.0, 0.30, 0.0, 0.0],
    [0.20, 0.40, 0.2, 0.20, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
    [0.0, 0.60, 0.0, 0.40, 0.0, 0.0],
    [0.0, 0.0, 0.6, 0.30, 0.1, 0.0],
    [0.0, 0.0, 0.6, 0.30, 0.1, 0.0],
    [0.0, 0.05, 0.0, 0.10, 0.0, 0.85],
])
KIND_FREE = np.array([[0.0, 0.0, 0.6, 0.3, 0.1, 0.0]] * 7)
KIND_FREE[A.RETIREE] = [0.0, 0.0, 0.45, 0.10, 0.45, 0.0]
KIND_FREE[A.HOME_WORKER] = [0.0, 0.0, 0.50, 0.30, 0.20, 0.0]
# Saturdays are busier, Sundays quieter (Monday = 0).
WEEKDAY_TRIP_FACTOR = np.array([1.0, 1.0, 1.0, 1.0, 1.1, 1.25, 0.95])
# How far each kind of trip goes (median, cells of 500 m) and how long it lasts (mean, slots).
KIND_RADIUS = np.array([1.5, 4.0, 5.0, 5.0, 3.0, 10.0])
KIND_STAY = np.array([1.4, 2.0, 4.5, 3.0, 2.0, 1.8])
FAVOURITE_SHARE = 0.55


def _slot_weights(peaks: list[tuple[float, float, float]]) -> np.ndarray:
    t = np.arange(SLOTS_PER_DAY) + 0.5
    w = sum(h * np.exp(-((t - mu) ** 2) / (2 * s**2)) for mu, s, h in peaks)
    return np.cumsum(w) / w.sum()


START_CDF = {
    DAY: _slot_weights([(27.0, 5.0, 1.0), (33.0, 3.0, 0.5)]),
    EVENING: _slot_weights([(39.5, 1.8, 1.0)]),
    MORNING: _slot_weights([(20.0, 1.5, 1.0)]),
}


@dataclass(frozen=True)
class Plan:
    """Intervals per user-day (row = user * days + day), J columns in priority order."""

    start: np.ndarray  # (n_ud, J) int8, first slot; start == end means unused
    end: np.ndarray  # (n_ud, J) int8, one past the last slot
    travel: np.ndarray  # (n_ud, J) int8, slots spent on the way before arriving
    origin: np.ndarray  # (n_ud, J) int32 cell where the interval's journey starts
    dest: np.ndarray  # (n_ud, J) int32 cell of the interval
    works: np.ndarray  # (n_users, days) bool, the main activity happens that day


def _draw(cum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise categorical draw from cumulative probabilities (..., k)."""
    u = rng.random(cum.shape[:-1])
    return (u[..., None] >= cum).sum(-1).clip(0, cum.shape[-1] - 1)


def _works(users: A.Users, days: int, holidays: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, days + 1) bool: whether the main activity happens, for day -1 (a Sunday) .. days - 1."""
    d = np.arange(-1, days)
    sched = users.workdays[:, d % 7]
    # Hospitals and factories do not close on public holidays; offices and schools do.
    hol = np.concatenate([[False], holidays])[None, :] & (users.profile != A.NIGHT_SHIFT)[:, None]
    go = rng.random(sched.shape) < users.attendance[:, None]
    # Office workers now and then go in on a weekend day too.
    extra = (users.profile == A.OFFICE)[:, None] & (d % 7 >= 5)[None, :] & (rng.random(sched.shape) < 0.04)
    return (sched & ~hol & go) | extra


def _travel_slots(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Door-to-door time in slots (~24 km/h), rounded at random so short trips sometimes take one."""
    return np.floor(distance_km(a, b) / 12.0 + rng.random(a.shape)).astype(np.int8)


def plan_days(users: A.Users, days: int, holidays: np.ndarray, city: City, rng: np.random.Generator) -> Plan:
    """The plans of a block of users for days 0..days-1 (holidays: bool per day)."""
    n = len(users)
    n_ud = n * days
    works_all = _works(users, days, holidays, rng)
    works, worked_before = works_all[:, 1:], works_all[:, :-1]
    prof = np.repeat(users.profile, days)  # (n_ud,)
    uidx = np.repeat(np.arange(n), days)
    dow = np.tile(np.arange(days) % 7, n)
    work_ud = works.reshape(-1)
    free = ~work_ud | (prof == A.RETIREE) | (prof == A.HOME_WORKER)

    start = np.zeros((n_ud, J), np.int8)
    end = np.zeros((n_ud, J), np.int8)
    home = users.home[uidx]
    anchor = users.anchor[uidx]

    # Main activity. Day workers: one interval [arrive, leave); night shift: the end of last night's
    # shift in the morning (column A) and tonight's start (column B).
    arrive = np.rint(users.depart[uidx] + rng.normal(0, 0.8, n_ud)).astype(np.int64)
    stay = np.rint(users.duration[uidx] + rng.normal(0, 1.5, n_ud)).astype(np.int64)
    night = prof == A.NIGHT_SHIFT
    day_job = work_ud & ~night & ~free
    a0 = np.clip(arrive, 0, SLOTS_PER_DAY - 1)
    start[day_job, J - 1] = a0[day_job]
    end[day_job, J - 1] = np.clip(a0 + stay, 0, SLOTS_PER_DAY)[day_job]
    tonight = night & work_ud
    start[tonight, J - 2] = np.clip(arrive, 36, SLOTS_PER_DAY - 1)[tonight]
    end[tonight, J - 2] = SLOTS_PER_DAY
    morning = night & worked_before.reshape(-1)
    end[morning, J - 1] = np.clip(arrive + stay - SLOTS_PER_DAY, 1, 20)[morning]

    # Irregular trips.
    rate = np.where(free, TRIP_RATE_FREE[prof] * WEEKDAY_TRIP_FACTOR[dow], TRIP_RATE_WORK[prof])
    n_trips = np.minimum(rng.poisson(rate * users.trip_mult[uidx]), N_TRIPS)
    on = np.arange(N_TRIPS)[None, :] < n_trips[:, None]  # (n_ud, N_TRIPS)
    tu, tj = np.nonzero(on)  # active trips only: most user-days use one or two of the five columns
    tp = prof[tu]
    cum = np.cumsum(np.where(free[tu, None], KIND_FREE[tp], KIND_WORK[tp]), axis=1)  # (n_trips, 6)
    kind = _draw(cum, rng)
    m = len(tu)
    leave = end[tu, J - 1].astype(np.int64)
    arrive_c = start[tu, J - 1].astype(np.int64)
    s = np.select(
        [kind == LUNCH, kind == AFTER_WORK, kind == DAY, kind == EVENING, kind == MORNING],
        [
            np.rint(24 + rng.normal(0, 1.0, m)).clip(22, 27),
            leave + rng.integers(0, 2, m),
            np.searchsorted(START_CDF[DAY], rng.random(m)),
            np.searchsorted(START_CDF[EVENING], rng.random(m)),
            np.searchsorted(START_CDF[MORNING], rng.random(m)),
        ],
        default=rng.integers(arrive_c + 1, np.maximum(leave - 1, arrive_c + 2)),  # field visits
    ).clip(0, SLOTS_PER_DAY - 1)
    length = rng.geometric(1.0 / KIND_STAY[kind])
    start[tu, tj] = s
    end[tu, tj] = np.minimum(s + length, SLOTS_PER_DAY)

    from_anchor = np.isin(kind, (LUNCH, AFTER_WORK, FIELD))
    t_origin = np.where(from_anchor, anchor[tu], home[tu]).astype(np.int32)
    dest = local_pick(t_origin, city.attract["leisure"], KIND_RADIUS[kind], rng)
    fav = users.favourites[uidx[tu], rng.integers(0, A.N_FAVOURITES, m)]
    use_fav = ~from_anchor & (rng.random(m) < FAVOURITE_SHARE)
    dest = np.where(use_fav, fav, dest)

    origin = np.empty((n_ud, J), np.int32)
    dests = np.empty((n_ud, J), np.int32)
    origin[:] = home[:, None]
    dests[:, :N_TRIPS] = home[:, None]
    dests[:, N_TRIPS:] = anchor[:, None]
    origin[tu, tj] = t_origin
    dests[tu, tj] = dest
    travel = np.zeros((n_ud, J), np.int8)
    travel[tu, tj] = _travel_slots(t_origin, dest, rng)
    commute = _travel_slots(home, anchor, rng)
    travel[:, J - 2] = commute
    travel[:, J - 1] = np.where(morning, 0, commute)  # already there since last night
    return Plan(start=start, end=end, travel=travel, origin=origin, dest=dests, works=works)
