"""Offline datasets of the trajectory encoder: observations split by user, (window, next window) pairs, labels.

Windows come from `models.windows` (the same code the stream worker uses). A training example is the
window ending at one of a user's observed slots and, as its target, the cells of the next 8 slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.slots import SLOTS_PER_DAY, WINDOW_SLOTS
from models.windows import Windows, latest_per_slot, model_input, sample_per_user, windows_at_observations, windows_for
from training.exceptions import DataFormatError


@dataclass(frozen=True)
class Observations:
    """One row per observed (uid, slot), sorted by (uid, slot); masked (999) records already dropped."""

    uid: np.ndarray
    slot: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.uid)

    def select(self, keep: np.ndarray) -> "Observations":
        return Observations(self.uid[keep], self.slot[keep], self.x[keep], self.y[keep])

    def users(self, uids: np.ndarray) -> "Observations":
        return self.select(np.isin(self.uid, uids))


def from_columns(uid, d, t, x, y) -> Observations:
    return Observations(*latest_per_slot(uid, np.asarray(d) * SLOTS_PER_DAY + np.asarray(t), x, y))


def load_observations(path: str | Path) -> Observations:
    """Read a YJMob/HuMob `uid,d,t,x,y` file with the validated readers (errors name the file and line)."""
    from training.readers import read_records

    cols = read_records(path)
    return from_columns(cols["uid"], cols["d"], cols["t"], cols["x"], cols["y"])


def split_by_user(obs: Observations, train_uid_below: int) -> tuple[Observations, Observations]:
    """(train, test): uid < train_uid_below trains; everyone else is held out for evaluation."""
    train = obs.uid < train_uid_below
    return obs.select(train), obs.select(~train)


def split_validation(obs: Observations, fraction: float, seed: int) -> tuple[Observations, Observations]:
    """(fit, validation) by user: a seeded `fraction` of the users watches for early stopping."""
    users = np.unique(obs.uid)
    rng = np.random.default_rng(seed)
    val = rng.choice(users, size=max(1, round(fraction * len(users))), replace=False) if len(users) > 1 else users[:0]
    is_val = np.isin(obs.uid, val)
    return obs.select(~is_val), obs.select(is_val)


@dataclass(frozen=True)
class Pairs:
    """Encoder inputs (N, 8, 5) and targets (N, 8, 2): the next window's cells, 0 where unobserved."""

    inp: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.inp)


def make_pairs(obs: Observations, rng: np.random.Generator | None = None, per_user: int | None = None) -> Pairs:
    """Windows ending at observed slots paired with the next window; with `per_user`, a random sample of
    at most that many per user (fresh each epoch when given a new rng). Pairs whose next window holds no
    observation carry no signal and are left out."""
    w = windows_at_observations(obs.uid, obs.slot, obs.x, obs.y)
    if per_user is not None:
        w = w.take(sample_per_user(w.uid, per_user, rng or np.random.default_rng(0)))
    nxt = windows_for(obs.uid, obs.slot, obs.x, obs.y, w.uid, w.end_slot + WINDOW_SLOTS)
    keep = nxt.mask.any(axis=1)
    w, nxt = w.take(keep), nxt.take(keep)
    target = np.stack([np.where(nxt.mask, nxt.x, 0), np.where(nxt.mask, nxt.y, 0)], axis=-1)
    return Pairs(window_input(w), target)


def window_input(w: Windows) -> np.ndarray:
    return model_input(w.x, w.y, w.mask, w.end_slot)


def load_labels(path: str | Path) -> "pd.DataFrame":  # noqa: F821
    """The planted labels file (uid, home_x, home_y, work_x, work_y, commuter, ...), indexed by uid."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no labels file (the synthetic city writes labels_city<X>.csv beside its data)")
    df = pd.read_csv(path)
    if "uid" not in df.columns:
        raise DataFormatError(f"{path}:1: labels file has no 'uid' column (header: {','.join(df.columns)})")
    return df.set_index("uid")


def labels_path_for(data: Path) -> Path:
    """labels_cityA.csv beside cityA_challengedata.csv (the synthetic city's naming)."""
    return data.with_name("labels_" + data.name.split("_")[0] + ".csv")


def poi_path_for(data: Path) -> Path:
    return data.with_name("POIdata_" + data.name.split("_")[0] + ".csv")
