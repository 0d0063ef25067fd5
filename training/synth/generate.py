"""Writes the synthetic cities: per city the YJMob-schema records, the POI file and the planted labels,
plus synth_meta.json. Users are generated in fixed blocks, each with its own seed, so the bytes do not
depend on how many worker processes run them.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from models.grid import cell_xy
from training.synth import agents as A
from training.synth import csvfmt
from training.synth.city import build_city, poi_table
from training.synth.meta import (  # noqa: F401  (re-exported: the public entry points live here)
    BLOCK_USERS, CITIES, CITY_SHAPES, GENERATOR_VERSION, HEADER, META_NAME, SynthSettings, city_params,
    file_names, parameters, plan_cities, read_meta,
)
from training.synth.observe import block_records
from training.synth.routines import plan_days


def _seq(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def holidays(seed: int, days: int) -> np.ndarray:
    """Public holidays (bool per day): about one weekday in 30, the same in every city."""
    rng = _seq(seed, 99)
    weekdays = np.flatnonzero(np.arange(days) % 7 < 5)
    out = np.zeros(days, bool)
    out[rng.choice(weekdays, size=min(days // 30, len(weekdays)), replace=False)] = True
    return out


# --- one block of users: runs in a worker process (state set once by _init) -------------------------

_STATE: dict = {}


def _init(city, users, days, hol, mask_from, seed, city_idx) -> None:
    _STATE.update(city=city, users=users, days=days, hol=hol, mask_from=mask_from, seed=seed, city_idx=city_idx)


def _block(b: int) -> tuple[bytes, int]:
    s = _STATE
    lo = b * BLOCK_USERS
    users = s["users"].slice(lo, lo + BLOCK_USERS)
    rng = _seq(s["seed"], s["city_idx"], 2, b)
    plan = plan_days(users, s["days"], s["hol"], s["city"], rng)
    u, d, t, x, y = block_records(users, plan, s["mask_from"][lo : lo + BLOCK_USERS], rng)
    words = csvfmt.uid_words(users.uid)
    return csvfmt.rows_bytes(words[u], d, t, x, y), len(u)


def _blocks_in_order(n_blocks: int, workers: int, initargs: tuple):
    """Yield each block's (bytes, rows) in block order, with at most 2 per worker in flight."""
    if workers <= 1 or n_blocks <= 1:
        _init(*initargs)
        for b in range(n_blocks):
            yield _block(b)
        return
    ctx = mp.get_context("forkserver")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=initargs) as pool:
        pending = {}
        nxt = 0
        for b in range(n_blocks):
            while nxt < n_blocks and len(pending) < 2 * workers:
                pending[nxt] = pool.submit(_block, nxt)
                nxt += 1
            yield pending.pop(b).result()


# --- files ------------------------------------------------------------------------------------------

class _Sink:
    """A file written to a temporary name and renamed when complete; gzip with a fixed header
    (mtime 0, no name) so that equal settings give equal bytes."""

    def __init__(self, path: Path, gz: bool) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.f = open(self.tmp, "wb")
        # Level 1: 6x faster than the default 6 on these rows for files ~20% larger; wbits 31 = gzip.
        self.z = zlib.compressobj(1, zlib.DEFLATED, 31) if gz else None
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)
        self.f.write(self.z.compress(data) if self.z else data)

    def close(self) -> None:
        if self.z:
            self.f.write(self.z.flush())
        self.f.close()
        os.replace(self.tmp, self.path)


def _write_small(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def labels_bytes(users: A.Users, mask_from: np.ndarray, days: int) -> bytes:
    hx, hy = cell_xy(users.home)
    wx, wy = cell_xy(users.anchor)
    names = np.array(A.PROFILES)[users.profile]
    return csvfmt.table_bytes(
        "uid,home_x,home_y,work_x,work_y,commuter,profile,night_shift,workdays,attendance,masked",
        [
            users.uid, hx, hy, wx, wy,
            np.isin(users.profile, A.COMMUTER_PROFILES).astype(int), names,
            (users.profile == A.NIGHT_SHIFT).astype(int), users.workdays.sum(1),
            np.round(users.attendance, 3), (mask_from < days).astype(int),
        ],
    )


def generate_city(st: SynthSettings, city: str, hol: np.ndarray, progress: Callable[[int], None]) -> dict:
    """Write one city's three files; returns its entry for synth_meta.json."""
    ci = CITIES.index(city)
    n_users = st.city_users(city)
    c = build_city(city, CITY_SHAPES[city], _seq(st.seed, ci, 0))
    users = A.build_users(c, n_users, 0, _seq(st.seed, ci, 1))
    n_mask = round(st.mask_users * n_users)
    mask_from = np.full(n_users, st.days, np.int64)
    if n_mask:
        mask_from[n_users - n_mask :] = st.days - st.masked_days  # like HuMob: the last users' last days

    names = file_names(city, st.gzip)
    px, py, pcat, pcount = poi_table(c)
    _write_small(st.out / names["poi"], csvfmt.table_bytes("x,y,category,POI_count", [px, py, pcat, pcount]))
    _write_small(st.out / names["labels"], labels_bytes(users, mask_from, st.days))

    sink = _Sink(st.out / names["records"], st.gzip)
    sink.write(HEADER.encode())
    rows = 0
    n_blocks = -(-n_users // BLOCK_USERS)
    initargs = (c, users, st.days, hol, mask_from, st.seed, ci)
    try:
        for b, (data, n) in enumerate(_blocks_in_order(n_blocks, min(st.workers, n_blocks), initargs)):
            sink.write(data)
            rows += n
            progress(min(BLOCK_USERS, n_users - b * BLOCK_USERS))
    except BaseException:
        sink.f.close()
        sink.tmp.unlink(missing_ok=True)
        raise
    sink.close()
    return {
        "params": city_params(st, city),
        "files": names,
        "rows": rows,
        "records_bytes": sink.bytes,
        "poi_rows": int(len(px)),
        "masked_users": n_mask,
        "masked_uids": [n_users - n_mask, n_users - 1] if n_mask else [],
        "masked_days": [st.days - st.masked_days, st.days - 1] if n_mask and st.masked_days else [],
        "profiles": {p: int((users.profile == i).sum()) for i, p in enumerate(A.PROFILES)},
    }


def generate(st: SynthSettings, progress_factory=None) -> dict:
    """Generate the requested cities (skipping up-to-date ones) and update synth_meta.json."""
    st.validate()
    st.out.mkdir(parents=True, exist_ok=True)
    meta = read_meta(st.out)
    todo, done = plan_cities(st, meta)
    hol = holidays(st.seed, st.days)
    cities = dict(meta.get("cities", {}))
    total = sum(st.city_users(c) for c in todo)
    bar = progress_factory(total) if progress_factory and todo else None
    for city in todo:
        cities[city] = generate_city(st, city, hol, bar.update if bar else (lambda n: None))
    if bar:
        bar.close()
    meta = {
        "generator_version": GENERATOR_VERSION,
        "schema": {"records": HEADER.strip(), "poi": "x,y,category,POI_count", "masked_cell": [999, 999]},
        "weekday_of_day": "d % 7, 0 = Monday",
        "holidays": np.flatnonzero(hol).tolist() if todo else meta.get("holidays", []),
        "block_users": BLOCK_USERS,
        "parameters": parameters(),
        "cities": cities,
    }
    _write_small(st.out / META_NAME, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return {"written": todo, "skipped": done, "meta": meta}
