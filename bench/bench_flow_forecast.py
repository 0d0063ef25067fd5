"""Benchmark: FlowForecaster.predict for all 40,000 cells of the grid in one closed slot (target well under 250 ms).

    .venv/bin/python bench/bench_flow_forecast.py [--checkpoint runs/flow/flow_lstm.pt] [--cache runs/flow_cache/cityA_challengedata-A]

Two inputs: "city" gives every grid cell its real 8-slot window from the cached flow tensor at a
busy test slot (cells never visited get empty windows, as online); "distinct" gives every cell a
different random window (worst case: no two windows share an LSTM pass). Baseline: the linear
model through the same wrapper and inputs. Prints median and best of --repeat runs, the ratio,
and the machine.
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


def timings(f, channels: np.ndarray, end_slot: int, repeat: int) -> list[float]:
    cells = np.arange(GRID)
    f.predict(channels, end_slot, cells)  # warm-up (allocations, thread pool)
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f.predict(channels, end_slot, cells)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    import torch

    from models.flow_forecaster import FlowForecaster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "flow" / "flow_lstm.pt")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "flow_cache" / "cityA_challengedata-A")
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    counts, active = np.load(a.cache / "counts.npy"), np.load(a.cache / "cells.npy")
    t = int(np.argmax(counts[:, :, 0].sum(axis=1)[8:])) + 8  # the busiest slot: most non-empty windows
    city = np.zeros((GRID, 8, 3), np.float32)
    city[active] = counts[t - 8 : t].transpose(1, 0, 2)
    distinct = np.random.default_rng(0).poisson(2.0, (GRID, 8, 3)).astype(np.float32)
    n_city = len(np.unique(city.reshape(GRID, -1), axis=0))
    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} (other jobs share it)")
    med = {}
    for kind in ("flow_lstm", "flow_linear"):
        f = FlowForecaster.load(a.checkpoint.with_name(f"{kind}.pt"))
        for name, ch in (("city", city), ("distinct", distinct)):
            ms = timings(f, ch, t - 1, a.repeat)
            med[kind, name] = statistics.median(ms)
            print(f"{kind:11s} {name:8s} windows, 40,000 cells: median {med[kind, name]:7.1f} ms, best {min(ms):7.1f} ms")
    print(f"city windows: {n_city} distinct of 40,000 (slot {t - 1}, the busiest)")
    for name in ("city", "distinct"):
        print(f"ratio FlowLSTM / linear ({name}): {med['flow_lstm', name] / med['flow_linear', name]:.1f}x")


if __name__ == "__main__":
    main()
