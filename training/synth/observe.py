"""How users are seen: bursty phone sessions (more by day, more when moving), missing days, location
noise and masked test days. Turns a block's plans into sorted YJMob records.
"""

from __future__ import annotations

import numpy as np

from models.grid import GRID_SIZE, MASKED, cell_xy
from models.slots import SLOTS_PER_DAY
from training.synth.agents import Users
from training.synth.routines import Plan

SESSION_STAY = 2.6  # mean slots a phone session keeps reporting
EVENT_STAY = 1.3
# Relative chance that a session starts in each hour: phones are quiet at night.
HOURLY_USE = np.array([0.25, 0.15, 0.1, 0.08, 0.08, 0.15, 0.45, 0.9, 1.1, 1.0, 0.9, 0.95,
                       1.15, 1.0, 0.9, 0.9, 0.95, 1.05, 1.2, 1.2, 1.15, 1.05, 0.8, 0.5])
SESSION_CDF = np.cumsum(np.repeat(HOURLY_USE, 2)) / np.repeat(HOURLY_USE, 2).sum()
# Inverse-CDF lookup table: a gather instead of a binary search per session.
_LUT_SIZE = 4096
SESSION_LUT = np.searchsorted(SESSION_CDF, (np.arange(_LUT_SIZE) + 0.5) / _LUT_SIZE).astype(np.int64)


def _paint(grid: np.ndarray, first: np.ndarray, length: np.ndarray, value) -> None:
    """grid[first[i] : first[i] + length[i]] = value for every i; one vectorised pass per slot of
    the longest span (spans are short, so this is a handful of passes)."""
    pos, rem = first, length
    while len(pos):
        grid[pos] = value
        keep = rem > 1
        pos, rem = pos[keep] + 1, rem[keep] - 1


def interval_grid(plan: Plan) -> np.ndarray:
    """(n_ud * 48,) int8: for every user-day slot the plan interval the user is in, -1 for home.
    Painted from the lowest priority up, so the first covering interval wins."""
    n_ud, n_int = plan.start.shape
    grid = np.full(n_ud * SLOTS_PER_DAY, -1, np.int8)
    base = np.arange(n_ud, dtype=np.int64) * SLOTS_PER_DAY
    for j in range(n_int - 1, -1, -1):
        length = plan.end[:, j].astype(np.int64) - plan.start[:, j]
        on = np.flatnonzero(length > 0)
        _paint(grid, base[on] + plan.start[on, j], length[on], j)
    return grid


def observed_slots(users: Users, plan: Plan, rng: np.random.Generator) -> np.ndarray:
    """Sorted flat indices ud * 48 + t of the observed user-day slots of a block."""
    n_ud = plan.start.shape[0]
    days = n_ud // len(users)
    uidx = np.repeat(np.arange(len(users)), days)
    seen_today = rng.random(n_ud) >= users.absent[uidx]
    # Day-to-day variation on top of the user's own rate: a gamma factor makes counts overdispersed.
    n_sess = rng.poisson(users.sessions[uidx] * rng.gamma(2.0, 0.5, n_ud)) * seen_today
    ud = np.repeat(np.arange(n_ud), n_sess)
    first = SESSION_LUT[rng.integers(0, _LUT_SIZE, len(ud))]
    length = rng.geometric(1.0 / SESSION_STAY, len(ud))

    # Movement makes phones report: departures and arrivals are observed with a personal chance.
    used = plan.end > plan.start
    ev_slot = np.concatenate([plan.start, plan.start + plan.travel], axis=1)  # (n_ud, 2J)
    ev_on = np.concatenate([used & (plan.start > 0), used & (plan.travel > 0)], axis=1)
    ev_on &= (rng.random(ev_slot.shape) < users.event_obs[uidx][:, None]) & seen_today[:, None]
    ev_on &= ev_slot < SLOTS_PER_DAY
    e_ud, e_j = np.nonzero(ev_on)
    ud = np.concatenate([ud, e_ud])
    first = np.concatenate([first, ev_slot[e_ud, e_j]])
    length = np.concatenate([length, rng.geometric(1.0 / EVENT_STAY, len(e_ud))])

    # Union of the spans, each clipped to its day, by a difference array: +1 where a span opens,
    # -1 one past its end; a slot is observed where the running sum is positive.
    lo = ud.astype(np.int64) * SLOTS_PER_DAY + first
    hi = lo + np.minimum(length, SLOTS_PER_DAY - first)
    size = n_ud * SLOTS_PER_DAY + 1
    depth = np.cumsum(np.bincount(lo, minlength=size) - np.bincount(hi, minlength=size))
    return np.flatnonzero(depth[:-1] > 0)


def locate(users: Users, plan: Plan, flat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cell id of each observed user-day slot (flat = ud * 48 + t): the first plan interval covering
    it, else home; on the way (within the interval's travel time) a point on the line from its origin."""
    days = plan.start.shape[0] // len(users)
    ud, t = flat // SLOTS_PER_DAY, flat % SLOTS_PER_DAY
    k = interval_grid(plan)[flat].astype(np.int64)
    hit = k >= 0
    fk = ud * plan.start.shape[1] + np.maximum(k, 0)  # flat (user-day, interval) index
    s_k = plan.start.reshape(-1)[fk].astype(np.int64)
    tr = plan.travel.reshape(-1)[fk].astype(np.int64)
    dest = plan.dest.reshape(-1)[fk]
    u = ud // days
    moving = hit & (t < s_k + tr)
    cell = np.where(hit, dest, users.home[u])
    if moving.any():
        m = np.flatnonzero(moving)
        ox, oy = cell_xy(plan.origin.reshape(-1)[fk[m]])
        dx, dy = cell_xy(dest[m])
        f = (t[m] - s_k[m] + rng.random(len(m))) / (tr[m] + 1)
        mx = np.rint(ox + f * (dx - ox)).astype(np.int64)
        my = np.rint(oy + f * (dy - oy)).astype(np.int64)
        cell[m] = (my - 1) * GRID_SIZE + (mx - 1)
    return cell


def jitter(users: Users, u: np.ndarray, x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
    """GPS noise: with the user's own small chance a record lands in one of the 8 neighbouring cells."""
    hit = np.flatnonzero(rng.random(len(u)) < users.noise[u])
    step = rng.integers(0, 8, len(hit))
    step = step + (step >= 4)  # skip the centre of the 3 x 3 block
    x[hit] = np.clip(x[hit] + step % 3 - 1, 1, GRID_SIZE)
    y[hit] = np.clip(y[hit] + step // 3 - 1, 1, GRID_SIZE)


def block_records(users: Users, plan: Plan, mask_from: np.ndarray, rng: np.random.Generator):
    """The block's rows (local user index, d, t, x, y), sorted by user, day, slot.

    `mask_from[i]` is the first masked day of user i (days or more: none)."""
    days = plan.start.shape[0] // len(users)
    flat = observed_slots(users, plan, rng)
    ud, t = flat // SLOTS_PER_DAY, flat % SLOTS_PER_DAY
    u, d = ud // days, ud % days
    x, y = cell_xy(locate(users, plan, flat, rng))
    jitter(users, u, x, y, rng)
    hidden = d >= mask_from[u]
    x[hidden] = MASKED
    y[hidden] = MASKED
    return u, d, t, x, y
