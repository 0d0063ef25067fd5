"""Per-user observation sequences for the RAW GPT: loading, the train/test user split, training batches.

A user's sequence is their observed (slot, cell) pairs in time order; masked (999, 999) records and
unobserved slots are simply absent, so consecutive tokens may be minutes or days apart. Every token
carries its slot of day and weekday, and every training target is a later observation of the same
user together with its time and its gap in slots (the query).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.grid import MASKED, cell_id
from models.slots import SLOTS_PER_DAY, weekday


@dataclass(frozen=True)
class Sequences:
    """All users' observations in time order, flattened: user k owns rows offsets[k]:offsets[k+1]."""

    uids: np.ndarray  # (U,)
    offsets: np.ndarray  # (U + 1,)
    slot: np.ndarray  # (N,) absolute slot d * 48 + t
    cell: np.ndarray  # (N,) dense cell id

    @property
    def n_users(self) -> int:
        return len(self.uids)

    @property
    def owner(self) -> np.ndarray:
        """(N,) index of the user owning each row."""
        return np.repeat(np.arange(self.n_users), np.diff(self.offsets))

    def select(self, keep: np.ndarray) -> Sequences:
        """The users where `keep` (U,) is True, in the same order."""
        lengths = np.diff(self.offsets)[keep]
        rows = np.repeat(keep, np.diff(self.offsets))
        offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        return Sequences(self.uids[keep], offsets, self.slot[rows], self.cell[rows])


def from_arrays(uid, d, t, x, y) -> Sequences:
    """Build sequences from YJMob columns; drops masked rows and keeps the last record per (uid, slot)."""
    uid, d, t, x, y = (np.asarray(a, dtype=np.int64) for a in (uid, d, t, x, y))
    keep = ~((x == MASKED) & (y == MASKED))
    uid, slot, cell = uid[keep], d[keep] * SLOTS_PER_DAY + t[keep], cell_id(x[keep], y[keep])
    order = np.lexsort((slot, uid))
    uid, slot, cell = uid[order], slot[order], cell[order]
    last = np.r_[(uid[1:] != uid[:-1]) | (slot[1:] != slot[:-1]), True]
    uid, slot, cell = uid[last], slot[last], cell[last]
    starts = np.flatnonzero(np.r_[True, uid[1:] != uid[:-1]]) if len(uid) else np.zeros(0, np.int64)
    offsets = np.r_[starts, len(uid)].astype(np.int64)
    return Sequences(uid[starts], offsets, slot, cell)


def load(path: str | Path) -> Sequences:
    """Read a YJMob/HuMob `uid,d,t,x,y` file (csv, csv.gz or parquet) through the validated readers;
    a bad row raises DataFormatError naming the file, line and field."""
    from training.readers import read_records

    cols = read_records(path)
    return from_arrays(cols["uid"], cols["d"], cols["t"], cols["x"], cols["y"])


def split_users(seqs: Sequences, train_uid_below: int) -> tuple[Sequences, Sequences]:
    """(train, test): users with uid < train_uid_below train, the rest are held out."""
    train = seqs.uids < train_uid_below
    return seqs.select(train), seqs.select(~train)


def split_validation(seqs: Sequences, fraction: float, seed: int) -> tuple[Sequences, Sequences]:
    """(fit, validation): a seeded random `fraction` of the users is kept for early stopping."""
    rng = np.random.default_rng(seed)
    val = np.zeros(seqs.n_users, dtype=bool)
    n_val = max(1, int(round(fraction * seqs.n_users))) if seqs.n_users > 1 else 0
    val[rng.choice(seqs.n_users, size=n_val, replace=False)] = True
    return seqs.select(~val), seqs.select(val)


def time_features(slot: np.ndarray) -> np.ndarray:
    """(..., 2) = (slot of day, weekday) of absolute slots."""
    slot = np.asarray(slot)
    return np.stack([slot % SLOTS_PER_DAY, weekday(slot // SLOTS_PER_DAY)], axis=-1)


def query_features(target_slot: np.ndarray, from_slot: np.ndarray) -> np.ndarray:
    """(..., 3) = (slot of day, weekday, gap in slots) of the slot to predict, seen from `from_slot`."""
    target_slot = np.asarray(target_slot)
    return np.concatenate([time_features(target_slot), (target_slot - from_slot)[..., None]], axis=-1)


@dataclass(frozen=True)
class Batch:
    """Model inputs as numpy int64 arrays; PAD where there is no token, target -1 where nothing is scored."""

    idx: np.ndarray  # (B, T)
    times: np.ndarray  # (B, T, 2)
    query: np.ndarray  # (B, T, 3)
    target: np.ndarray  # (B, T)


def windows(seqs: Sequences, starts: np.ndarray, block: int, ahead: np.ndarray, pad: int) -> Batch:
    """Windows of `block` tokens beginning at flat rows `starts`; position i targets row i + ahead[i].

    Rows past the owner's last observation become PAD; targets past it are not scored.
    """
    owner = seqs.owner
    end = seqs.offsets[owner[starts] + 1]  # (B,) first row after each window's user
    rows = starts[:, None] + np.arange(block)[None, :]  # (B, T)
    real = rows < end[:, None]
    safe = np.where(real, rows, 0)
    tgt_rows = safe + ahead
    scored = real & (tgt_rows < end[:, None])
    tgt_safe = np.where(scored, tgt_rows, 0)
    slot = seqs.slot[safe]
    return Batch(
        idx=np.where(real, seqs.cell[safe], pad),
        times=time_features(slot),
        query=query_features(seqs.slot[tgt_safe], slot),
        target=np.where(scored, seqs.cell[tgt_safe], -1),
    )


def sample_batch(seqs: Sequences, rng: np.random.Generator, batch: int, block: int, max_ahead: int, pad: int) -> Batch:
    """Random training windows; each position's target is the k-th next observation, k log-uniform
    in 1..max_ahead, so queries cover short hops and long gaps (overnight, the next day) alike."""
    lengths = np.diff(seqs.offsets)
    # a window start is drawn so every observation is about equally likely to be trained on
    user = rng.choice(seqs.n_users, size=batch, p=lengths / lengths.sum())
    room = np.maximum(lengths[user] - block, 0)
    starts = seqs.offsets[user] + (rng.random(batch) * (room + 1)).astype(np.int64)
    ahead = np.floor((max_ahead + 1) ** rng.random((batch, block))).astype(np.int64).clip(1, max_ahead)
    return windows(seqs, starts, block, ahead, pad)


def tiling_starts(seqs: Sequences, block: int) -> np.ndarray:
    """Window starts that tile every user's sequence (for a fixed validation set)."""
    out = [np.arange(a, max(a + 1, b - block + 1), block) for a, b in zip(seqs.offsets[:-1], seqs.offsets[1:]) if b > a]
    return np.concatenate(out) if out else np.zeros(0, np.int64)
