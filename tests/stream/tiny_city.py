"""A tiny deterministic YJMob-format city for stream tests: sparse users hopping between a few cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def tiny_city(n_users: int = 60, days: int = 2, seed: int = 7, p_seen: float = 0.35, masked: float = 0.02) -> pd.DataFrame:
    """Rows uid,d,t,x,y sorted by (uid, d, t); about `masked` of them are (999, 999)."""
    rng = np.random.default_rng(seed)
    rows = []
    anchors = rng.integers(1, 12, size=(n_users, 3, 2))
    for u in range(n_users):
        for slot in range(days * 48):
            if rng.random() > p_seen:
                continue
            x, y = anchors[u, rng.integers(0, 3)]
            if rng.random() < masked:
                x = y = 999
            rows.append((u, slot // 48, slot % 48, int(x), int(y)))
    return pd.DataFrame(rows, columns=["uid", "d", "t", "x", "y"])


def write_city(path: Path, **kw) -> pd.DataFrame:
    df = tiny_city(**kw)
    df.to_csv(path, index=False)
    return df
