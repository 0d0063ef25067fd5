"""Benchmark: flow tensor build for a 100,000-user x 75-day city (target <= 90 s), beside DuckDB just reading it.

    .venv/bin/python bench/bench_flow_build.py [--users 100000] [--days 75] [--file PATH]

Without --file it writes (once, cached under runs/bench/) a YJMob-format CSV made with numpy: users
with home and work cells, seen in ~25% of slots (about 12 records per user-day, as in the synthetic
demo city), 3% masked rows, sorted by uid, d, t. Each phase runs in its own process so that its peak
RSS is its own. Prints wall time and peak RSS of the baseline (count + sum over the CSV) and the
build, and their ratio, with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_city(path: Path, users: int, days: int, seed: int = 0, block: int = 5000) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    slots = days * 48
    t = np.arange(slots) % 48
    with pcsv.CSVWriter(tmp, pa.schema([(c, pa.int32()) for c in ("uid", "d", "t", "x", "y")])) as w:
        for u0 in range(0, users, block):
            n = min(block, users - u0)
            home = np.clip(rng.normal(100, 30, (n, 2)), 1, 200).astype(np.int32)
            work = np.clip(rng.normal(100, 15, (n, 2)), 1, 200).astype(np.int32)
            seen = rng.random((n, slots)) < 0.25
            uu, ss = np.nonzero(seen)  # row-major: sorted by uid then slot
            at_work = (t[ss] >= 18) & (t[ss] < 36) & ((ss // 48) % 7 < 5) & (rng.random(len(ss)) < 0.7)
            xy = np.where(at_work[:, None], work[uu], home[uu])
            trip = rng.random(len(ss)) < 0.1
            xy[trip] = np.clip(xy[trip] + rng.integers(-10, 11, (int(trip.sum()), 2)), 1, 200)
            xy[rng.random(len(ss)) < 0.03] = 999
            cols = [uu + u0, ss // 48, ss % 48, xy[:, 0], xy[:, 1]]
            w.write_table(pa.table([pa.array(c.astype(np.int32)) for c in cols], names=["uid", "d", "t", "x", "y"]))
    os.replace(tmp, path)


def phase(name: str, path: Path) -> dict:
    t0 = time.perf_counter()
    if name == "baseline":
        import duckdb

        src = str(path).replace("'", "''")
        reader = f"read_parquet('{src}')" if path.suffix == ".parquet" else f"read_csv('{src}', header = true)"
        rows = duckdb.connect().execute(f"SELECT count(*), sum(x) FROM {reader}").fetchone()[0]
        extra = {"rows": rows}
    else:
        from training.flow_build import FlowBuildSettings, build

        fd = build(FlowBuildSettings(path, None, cache_dir=ROOT / "runs" / "bench" / "flow_cache"))
        extra = {k: fd.meta[k] for k in ("n_slots", "n_cells", "observations", "dtype")}
    wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), **extra}


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.machine())
    return f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=75)
    ap.add_argument("--file", type=Path, default=None, help="an existing uid,d,t,x,y dataset instead of the numpy city")
    ap.add_argument("--phase", choices=["baseline", "build"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    path = a.file or ROOT / "runs" / "bench" / f"numpy_city_{a.users}x{a.days}.csv"
    if a.phase:
        print(json.dumps(phase(a.phase, path)))
        return
    if not path.exists():
        t0 = time.perf_counter()
        write_city(path, a.users, a.days)
        print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s")
    res, load_before = {}, os.getloadavg()[0]
    for name in ("baseline", "build"):
        out = subprocess.run([sys.executable, __file__, "--phase", name, "--file", str(path)], capture_output=True, text=True, check=True)
        res[name] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"machine: {machine()}, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other jobs share it)")
    print(f"data: {path.name}, {path.stat().st_size / 1e9:.2f} GB, {res['baseline']['rows']} rows")
    print(f"baseline (DuckDB count+sum over the file): {res['baseline']['wall_s']} s, peak RSS {res['baseline']['peak_rss_mb']} MB")
    b = res["build"]
    print(f"flow build (read + models.flows step + dense tensor + cache): {b['wall_s']} s, peak RSS {b['peak_rss_mb']} MB "
          f"({b['n_slots']} slots x {b['n_cells']} cells, {b['dtype']})")
    print(f"ratio build / baseline: {b['wall_s'] / res['baseline']['wall_s']:.2f}x; target <= 90 s: {'met' if b['wall_s'] <= 90 else 'NOT met'}")


if __name__ == "__main__":
    main()
