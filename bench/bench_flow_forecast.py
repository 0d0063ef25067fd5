"""Benchmark: FlowForecaster.predict for all 40,000 cells of the grid and all horizons in one closed slot (target 250 ms).

    .venv/bin/python bench/bench_flow_forecast.py [--checkpoint runs/flow/flow_lstm.pt] [--cache runs/flow_cache/cityA_challengedata-A]

Two inputs: "city" gives every grid cell its real 8-slot window from the cached flow tensor at a
busy test slot (cells never visited get empty windows, as online); "distinct" gives every cell a
different random window (worst case: no two windows share an LSTM pass). Baselines, same run and
inputs: the plain path (`model_input` for every cell, then `model.predict`: what `predict` did
before the distinct-window / per-cell split) and the linear model through the same wrapper.
Prints median and best of --repeat runs, the ratios, torch threads and the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_flow_build import machine  # noqa: E402

GRID = 200 * 200


def busiest_windows(cache: Path, limit: int = GRID) -> tuple[int, np.ndarray, np.ndarray]:
    """A cached flow tensor's busiest slot t: (t, cell ids, (C, 8, 3) windows of slots t-8..t-1) for the
    cells with any count in the window (what the stream holds), at most `limit` of them."""
    counts, active = np.load(cache / "counts.npy", mmap_mode="r"), np.load(cache / "cells.npy")
    t = int(np.argmax(counts[8:, :, 0].sum(axis=1))) + 8
    win = np.asarray(counts[t - 8 : t]).transpose(1, 0, 2).astype(np.float32)  # (N, 8, 3) oldest first
    keep = np.flatnonzero(win.reshape(len(win), -1).any(axis=1))[:limit]
    return t, active[keep], win[keep]


def plain_predict(f, channels: np.ndarray, end_slot: int, cells: np.ndarray) -> np.ndarray:
    """The baseline: features for every cell, then the model's own forward."""
    import torch

    from models.features import model_input, poi_features

    seq, static = model_input(channels, end_slot, poi_features(f.poi_grid[cells], f.stats), f.stats)
    with torch.inference_mode():
        return (f.model.predict(torch.from_numpy(seq), torch.from_numpy(static)) * f._scale).clamp_min(0).numpy()


def timings(call, channels: np.ndarray, end_slot: int, repeat: int) -> tuple[list[float], list[float]]:
    """Wall and process CPU milliseconds per call (CPU time is what a busy shared machine does not inflate)."""
    cells = np.arange(GRID)
    call(channels, end_slot, cells)  # warm-up (allocations, thread pool)
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        call(channels, end_slot, cells)
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return wall, cpu


def main() -> None:
    import torch

    from models.flow_forecaster import FlowForecaster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "flow" / "flow_lstm.pt")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "flow_cache" / "cityA_challengedata-A")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: what FlowForecaster picks)")
    a = ap.parse_args()
    t, busy, win = busiest_windows(a.cache)
    city = np.zeros((GRID, 8, 3), np.float32)  # every grid cell; the rest have empty windows
    city[busy] = win
    distinct = np.random.default_rng(0).poisson(2.0, (GRID, 8, 3)).astype(np.float32)
    n_city = len(np.unique(city.reshape(GRID, -1), axis=0))
    fs = {kind: FlowForecaster.load(a.checkpoint.with_name(f"{kind}.pt")) for kind in ("flow_lstm", "flow_linear")}
    if a.threads:
        torch.set_num_threads(a.threads)
    load = os.getloadavg()[0]
    med = {}
    runs = [("flow_lstm", fs["flow_lstm"].predict), ("flow_lstm plain", lambda *x: plain_predict(fs["flow_lstm"], *x)), ("flow_linear", fs["flow_linear"].predict)]
    for name, call in runs:
        for inp, ch in (("city", city), ("distinct", distinct)):
            ms, cpu = timings(call, ch, t - 1, a.repeat)
            med[name, inp] = statistics.median(ms)
            print(f"{name:15s} {inp:8s} windows, 40,000 cells: median {med[name, inp]:7.1f} ms, best {min(ms):7.1f} ms, "
                  f"CPU median {statistics.median(cpu):7.1f} ms")
    print(f"city windows: {n_city} distinct of 40,000 (slot {t - 1}, the busiest); each call forecasts "
          f"{fs['flow_lstm'].horizons} horizon(s) for every cell")
    for inp in ("city", "distinct"):
        print(f"{inp}: FlowLSTM / plain path {med['flow_lstm', inp] / med['flow_lstm plain', inp]:.3f}x, "
              f"FlowLSTM / linear {med['flow_lstm', inp] / med['flow_linear', inp]:.1f}x")
    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}, load average {load:.1f} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
