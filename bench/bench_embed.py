"""Benchmark: embed 30,000 windows with TrajectoryEmbedder (target <= 2 s on the 2-core CPU).

Baseline measured in the same run: the same encoder and batches with autograd on (no inference_mode),
as a caller that forgot the wrapper would run it. Windows are real ones from the demo city (windows
ending at observed slots) when the file exists, else random windows of the same density; a fully
observed worst case is timed too. Prints each figure, the baseline, the ratio and the machine.

    .venv/bin/python bench/bench_embed.py [--checkpoint runs/encoder/encoder.pt] [--data data/synth/cityA_challengedata.csv] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.embedder import TrajectoryEmbedder  # noqa: E402
from models.encoder import EncoderConfig, TrajectoryEncoder  # noqa: E402
from models.windows import model_input  # noqa: E402


def demo_windows(data: Path, n: int, rng) -> tuple:
    from training.encoder_data import load_observations
    from models.windows import windows_at_observations

    obs = load_observations(data)
    w = windows_at_observations(obs.uid, obs.slot, obs.x, obs.y)
    w = w.take(rng.choice(len(w), size=n, replace=len(w) < n))
    return w.x, w.y, w.mask, w.end_slot, f"{n} windows ending at observed slots of {data}"


def random_windows(n: int, density: float, rng) -> tuple:
    mask = rng.random((n, 8)) < density
    mask[:, -1] = True
    return rng.integers(1, 201, (n, 8)), rng.integers(1, 201, (n, 8)), mask, np.full(n, 1000), f"{n} random windows, density {density:.2f}"


def best_of(fn, repeats: int) -> tuple[float, float]:
    """Best wall time and the process CPU time of that run (on a busy machine the CPU time is closer to
    what an idle core gives)."""
    times = []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - t, time.process_time() - c))
    return min(times)


def without_inference_mode(emb: TrajectoryEmbedder, x, y, mask, end) -> None:
    inp = torch.from_numpy(model_input(x, y, mask, end))
    for i in range(0, len(inp), emb.batch_size):
        emb.model.embed(inp[i : i + emb.batch_size]).detach().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=Path("runs/encoder/encoder.pt"))
    ap.add_argument("--data", type=Path, default=Path("data/synth/cityA_challengedata.csv"))
    ap.add_argument("--n", type=int, default=30_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts to time")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    if a.checkpoint.is_file():
        emb = TrajectoryEmbedder.load(a.checkpoint, batch_size=a.batch_size)
    else:
        torch.manual_seed(0)
        emb = TrajectoryEmbedder(TrajectoryEncoder(EncoderConfig()), "untrained (no checkpoint)", batch_size=a.batch_size)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}, "
          f"torch {torch.__version__}, device {emb.device}, {time.strftime('%H:%M UTC', time.gmtime())}")
    print(f"model: {emb.version}, dim {emb.dim}, batch {a.batch_size}, best of {a.repeats}")
    cases = [demo_windows(a.data, a.n, rng) if a.data.is_file() else random_windows(a.n, 0.55, rng)]
    full = np.ones((a.n, 8), dtype=bool)
    cases.append((cases[0][0], cases[0][1], full, cases[0][3], f"{a.n} fully observed windows (worst case)"))
    for x, y, mask, end, label in cases:
        print(f"{label} (mean {mask.sum(1).mean():.2f} observed slots):")
        for threads in (int(t) for t in a.threads.split(",")):
            torch.set_num_threads(threads)
            emb.embed(x[:256], y[:256], mask[:256], end[:256])  # warm-up
            (fast, fast_cpu), (slow, slow_cpu) = (best_of(lambda: emb.embed(x, y, mask, end), a.repeats),
                                                  best_of(lambda: without_inference_mode(emb, x, y, mask, end), a.repeats))
            print(f"  {threads} thread(s), load {os.getloadavg()[0]:.1f}: TrajectoryEmbedder.embed {fast:.2f} s wall, "
                  f"{fast_cpu:.2f} s CPU ({a.n / fast:,.0f} windows/s; target <= 2 s); baseline, autograd on: {slow:.2f} s wall, "
                  f"{slow_cpu:.2f} s CPU; ratio {slow / fast:.2f}x")


if __name__ == "__main__":
    main()
