"""The synthetic population: each user's profile, anchors (home, work or school), favourite places and
personal habits (timing, trip and observation rates), all drawn once per city.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.grid import GRID_SIZE, cell_id, cell_xy
from training.synth.city import City, sample_cells
from training.synth.gravity import distance_km, gravity_pick, local_pick

# Profiles and their shares. `commuter` is 1 for people with a regular daytime job at a fixed place
# away from home; night-shift workers, students and mobile workers also leave home on a schedule,
# which is what keeps the label from being one rule away.
PROFILES = ("office", "part_time", "night_shift", "student", "retiree", "home_worker", "mobile_worker")
PROFILE_SHARES = (0.50, 0.10, 0.05, 0.13, 0.10, 0.07, 0.05)
COMMUTER_PROFILES = (0, 1)
OFFICE, PART_TIME, NIGHT_SHIFT, STUDENT, RETIREE, HOME_WORKER, MOBILE_WORKER = range(7)
N_FAVOURITES = 4

# Gravity exponents: jobs are sought city-wide, schools close to home.
BETA_WORK = 1.6
BETA_SCHOOL = 2.8


@dataclass(frozen=True)
class Users:
    """One row per user (uid = index + uid0); arrays of equal length."""

    uid: np.ndarray
    profile: np.ndarray  # int8 index into PROFILES
    home: np.ndarray  # int32 cell id
    anchor: np.ndarray  # int32 cell id of work, school or depot; home for those without one
    favourites: np.ndarray  # (n, N_FAVOURITES) int32 cells of habitual leisure places
    workdays: np.ndarray  # (n, 7) bool: the weekdays this user normally works or studies
    attendance: np.ndarray  # float: chance of going on a normal workday (sick days, remote days)
    depart: np.ndarray  # float slot: habitual start of the main activity (arrival at the anchor)
    duration: np.ndarray  # float slots: habitual length of the main activity
    travel: np.ndarray  # int slots: commute time
    trip_mult: np.ndarray  # float: personal multiplier on irregular trips
    sessions: np.ndarray  # float: mean phone sessions a day (drives how often the user is seen)
    absent: np.ndarray  # float: chance a day has no observation at all
    event_obs: np.ndarray  # float: chance a departure or arrival is observed
    noise: np.ndarray  # float: chance a record lands in a neighbouring cell

    def __len__(self) -> int:
        return len(self.uid)

    def slice(self, lo: int, hi: int) -> "Users":
        return Users(**{k: v[lo:hi] for k, v in self.__dict__.items()})


def _workdays(profile: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(profile)
    wd = np.zeros((n, 7), bool)
    weekdays = np.array([1, 1, 1, 1, 1, 0, 0], bool)
    full = np.isin(profile, (OFFICE, STUDENT, MOBILE_WORKER))
    wd[full] = weekdays
    # Part-timers keep three fixed weekdays; night-shift rotas cover five days, weekends included.
    pt = np.flatnonzero(profile == PART_TIME)
    pick = np.argsort(rng.random((len(pt), 5)), axis=1)[:, :3]
    wd[pt[:, None], pick] = True
    ns = np.flatnonzero(profile == NIGHT_SHIFT)
    pick = np.argsort(rng.random((len(ns), 7)), axis=1)[:, :5]
    wd[ns[:, None], pick] = True
    sat = (profile == MOBILE_WORKER) & (rng.random(n) < 0.3)
    wd[sat, 5] = True
    return wd


def build_users(city: City, n: int, uid0: int, rng: np.random.Generator) -> Users:
    """Draw `n` users: homes by population density, anchors by gravity, habits per profile."""
    profile = rng.choice(len(PROFILES), size=n, p=PROFILE_SHARES).astype(np.int8)
    home = sample_cells(city.cdf("population"), rng, n)

    anchor = home.copy()
    jobs = np.isin(profile, (OFFICE, PART_TIME, MOBILE_WORKER))
    anchor[jobs] = gravity_pick(home[jobs], city.cdf("work"), BETA_WORK, rng)
    night = profile == NIGHT_SHIFT
    anchor[night] = gravity_pick(home[night], city.cdf("night"), BETA_WORK, rng)
    stud = profile == STUDENT
    anchor[stud] = gravity_pick(home[stud], city.cdf("school"), BETA_SCHOOL, rng)
    # A job in one's own home cell would be invisible; such people work next door instead.
    same = (anchor == home) & (profile != RETIREE) & (profile != HOME_WORKER)
    ax, ay = cell_xy(anchor[same])
    step = rng.integers(0, 4, int(same.sum()))
    ax = np.clip(ax + np.array([1, -1, 0, 0])[step], 1, GRID_SIZE)
    ay = np.clip(ay + np.array([0, 0, 1, -1])[step], 1, GRID_SIZE)
    anchor[same] = cell_id(ax, ay)

    # Habitual leisure places near home (preferential return): shops, parks, a gym, friends.
    fav_home = np.repeat(home, N_FAVOURITES)
    favourites = local_pick(fav_home, city.attract["leisure"], 6.0, rng).reshape(n, N_FAVOURITES)

    travel = np.rint(distance_km(home, anchor) / 12.0).astype(np.int64)  # ~24 km/h door to door
    depart = np.select(
        [profile == OFFICE, profile == PART_TIME, profile == STUDENT, profile == MOBILE_WORKER, night],
        [rng.normal(17.0, 1.3, n), rng.normal(19.5, 2.0, n), rng.normal(16.8, 0.4, n), rng.normal(15.5, 1.0, n),
         rng.normal(43.0, 0.8, n)],
        default=0.0,
    )
    depart = np.where(night, depart, np.clip(depart, 11, 30))
    duration = np.select(
        [profile == OFFICE, profile == PART_TIME, profile == STUDENT, profile == MOBILE_WORKER, night],
        [rng.normal(18.5, 1.5, n), rng.normal(10.0, 2.0, n), rng.normal(14.0, 1.5, n), rng.normal(19.0, 1.5, n),
         rng.normal(17.0, 1.0, n)],
        default=0.0,
    ).clip(4, 26)
    # Office workers go in most days; some work from home one or two days a week (hybrid).
    remote = np.where(profile == OFFICE, rng.beta(0.6, 3.0, n) * 0.5, 0.0)
    attendance = np.where(profile == STUDENT, 0.97, 0.93 - remote)

    return Users(
        uid=np.arange(uid0, uid0 + n, dtype=np.int64),
        profile=profile,
        home=home,
        anchor=anchor.astype(np.int32),
        favourites=favourites,
        workdays=_workdays(profile, rng),
        attendance=attendance,
        depart=depart,
        duration=duration,
        travel=travel,
        trip_mult=rng.lognormal(-0.125, 0.5, n),
        sessions=rng.lognormal(np.log(9.5) - 0.32, 0.8, n),
        absent=rng.beta(1.0, 7.0, n),
        event_obs=rng.beta(2.0, 3.0, n),
        noise=rng.beta(1.0, 25.0, n),
    )
