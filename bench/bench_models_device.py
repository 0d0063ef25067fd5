"""Model inference at a slot close on whatever device torch picks (CUDA when present), beside the same
machine's CPU in the same run: FlowForecaster.predict for a city's cells and TrajectoryEmbedder.embed for
30,000 users' windows. Made for the GPU machine kind, which has torch but not the stream's services, so
the inputs travel as one .npz:

    # here: the windows the stream would hand the models, from a flow cache and a city file
    .venv/bin/python bench/bench_models_device.py prepare --cache C --data D --out inputs.npz
    # there (or here): time both models on the default device and, as the baseline, on the CPU
    python3 bench/bench_models_device.py run --inputs inputs.npz --forecaster F --embedder E [--repeat 20]

Cases: the cache's busiest slot (every cell with a non-empty window, as `Inference._compute` passes them), the
same padded to 40,000 cells with random distinct windows (the issue's 40,000-cell close, worst case),
30,000 windows ending at observed slots of the city file, and the same fully observed (worst case).
Prints p50/p95 per case and device, the ratio CPU / device, and the machine. The stream's own part of a
slot close (Redis, records, Kafka) is measured by bench/bench_slot_close.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GRID = 200 * 200


def prepare(a) -> None:
    from bench.bench_flow_forecast import busiest_windows
    from models.windows import windows_at_observations
    from training.encoder_data import load_observations

    rng = np.random.default_rng(0)
    t, cells, win = busiest_windows(a.cache)
    free = np.setdiff1d(np.arange(GRID), cells)
    pad = rng.choice(free, size=max(0, a.cells - len(cells)), replace=False)
    pad_win = rng.poisson(2.0, (len(pad), 8, 3)).astype(np.float32)
    obs = load_observations(a.data)
    w = windows_at_observations(obs.uid, obs.slot, obs.x, obs.y)
    w = w.take(rng.choice(len(w), size=a.users, replace=len(w) < a.users))
    np.savez_compressed(a.out, end_slot=t - 1, cells=cells, win=win, pad_cells=pad, pad_win=pad_win,
                        x=w.x, y=w.y, mask=w.mask, w_end=w.end_slot)
    print(f"{a.out}: slot {t - 1}: {len(cells):,} cells with windows (+{len(pad):,} random), {len(w.x):,} user windows")


def timed(call, repeat: int) -> list[float]:
    import torch

    call()  # warm-up: allocations, kernels, thread pool
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()  # returns numpy: the copy back to the host synchronises the device
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def measure(a) -> dict:
    import torch

    from models.embedder import TrajectoryEmbedder
    from models.flow_forecaster import FlowForecaster

    d = np.load(a.inputs)
    f = FlowForecaster.load(a.forecaster)
    e = TrajectoryEmbedder.load(a.embedder)
    end = int(d["end_slot"])
    cells, win = d["cells"], d["win"]
    all_cells = np.concatenate([cells, d["pad_cells"]])
    order = np.argsort(all_cells)
    all_win = np.concatenate([win, d["pad_win"]])[order]
    all_cells = all_cells[order]
    x, y, mask, w_end = d["x"], d["y"], d["mask"], d["w_end"]
    full = np.ones_like(mask)
    cases = {
        f"forecasts, busiest slot ({len(cells):,} cells)": lambda: f.predict(win, end, cells),
        f"forecasts, {len(all_cells):,} cells (padded with distinct windows)": lambda: f.predict(all_win, end, all_cells),
        f"embeddings, {len(x):,} city windows": lambda: e.embed(x, y, mask, w_end),
        f"embeddings, {len(x):,} fully observed windows": lambda: e.embed(x, y, full, w_end),
    }
    dev = str(f.device)
    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else (platform.processor() or platform.machine())
    res = {"device": dev, "name": name, "threads": torch.get_num_threads(), "torch": torch.__version__, "cases": {}}
    for label, call in cases.items():
        ms = timed(call, a.repeat)
        res["cases"][label] = {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95))}
    return res


def run(a) -> None:
    here = measure(a)
    if here["device"] != "cpu":  # the baseline: the same calls on this machine's CPU, in a child without CUDA
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
        out = subprocess.run([sys.executable, __file__, "measure", "--inputs", str(a.inputs), "--forecaster", str(a.forecaster),
                              "--embedder", str(a.embedder), "--repeat", str(max(3, a.repeat // 4))],
                             env=env, capture_output=True, text=True, check=True).stdout
        cpu = json.loads(out.strip().splitlines()[-1])
    else:
        cpu = here
    print(f"machine: {platform.node()}, {os.cpu_count()} cpus, {here['name']} ({here['device']}), torch {here['torch']}, "
          f"CPU baseline with {cpu['threads']} torch threads, {time.strftime('%H:%M UTC', time.gmtime())}")
    print(f"| case | {here['device']} p50 ms | {here['device']} p95 ms | CPU p50 ms | CPU p95 ms | CPU / {here['device']} (p50) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in here["cases"].items():
        c = cpu["cases"][label]
        print(f"| {label} | {r['p50']:,.1f} | {r['p95']:,.1f} | {c['p50']:,.1f} | {c['p95']:,.1f} | {c['p50'] / r['p50']:.1f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--cache", type=Path, required=True, help="a flow cache folder (mobstream flow-build)")
    p.add_argument("--data", type=Path, required=True, help="the city file, for the users' windows")
    p.add_argument("--cells", type=int, default=GRID)
    p.add_argument("--users", type=int, default=30_000)
    p.add_argument("--out", type=Path, required=True)
    for name in ("run", "measure"):
        r = sub.add_parser(name)
        r.add_argument("--inputs", type=Path, required=True)
        r.add_argument("--forecaster", type=Path, required=True)
        r.add_argument("--embedder", type=Path, required=True)
        r.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a)
    elif a.cmd == "measure":
        print(json.dumps(measure(a)))
    else:
        run(a)


if __name__ == "__main__":
    main()
