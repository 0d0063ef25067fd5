"""Benchmark of `mobstream generate` at full scale (default 100,000 users x 75 days, city A).

Prints wall time, peak memory of the process tree, rows written and rows/s, beside the I/O floor:
the time to format and write the same number of rows of a trivial numpy array with the same writer
(training.synth.csvfmt), measured in the same run. Targets: <= 60 s and <= 4 GB on 2 cores.

    .venv/bin/python bench/bench_generate.py [--users 100000] [--days 75] [--workers 2] [--repeat 1]
    .venv/bin/python bench/bench_generate.py --realism          # figures of the demo city
    .venv/bin/python bench/bench_generate.py --stages --writer-check 10000000 --users 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.synth import csvfmt  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB RAM, load average {os.getloadavg()[0]:.1f} at start"


class TreeRss:
    """Samples the summed RSS of a process and all its descendants every 50 ms and keeps the peak;
    also each process's last-seen CPU time (getrusage misses grandchildren such as pool workers)."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                rss = 0
                for p in procs:
                    try:
                        rss += p.memory_info().rss
                        c = p.cpu_times()
                        self.cpu[p.pid] = c.user + c.system
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def run_generate(out: Path, users: int, days: int, workers: int) -> dict:
    cmd = [sys.executable, "-m", "mobstream.cli", "generate", "--out", str(out), "--users", str(users),
           "--days", str(days), "--cities", "A", "--workers", str(workers), "--force"]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rss = TreeRss(p.pid)
    stdout, stderr = p.communicate()
    wall = time.perf_counter() - t0
    peak = rss.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"generate failed ({p.returncode}):\n{stderr}")
    meta = json.loads((out / "synth_meta.json").read_text())["cities"]["A"]
    return {
        "wall_s": wall,
        "cpu_s": sum(rss.cpu.values()),  # sampled: misses at most the last 50 ms of each process
        "main_cpu_s": rss.cpu.get(p.pid, 0.0),
        "peak_tree_rss": peak,
        "max_child_rss": after.ru_maxrss * 1024,
        "rows": meta["rows"],
        "bytes": meta["records_bytes"],
    }


def io_floor(path: Path, rows: int, block: int = 1_000_000) -> float:
    """Seconds to format and write `rows` rows of a trivial array with the generator's own writer."""
    words = csvfmt.uid_words(np.arange(100_000))
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        f.write(b"uid,d,t,x,y\n")
        for lo in range(0, rows, block):
            i = np.arange(lo, min(lo + block, rows))
            f.write(csvfmt.rows_bytes(words[(i // 1125) % 100_000], (i // 15) % 75, i % 48, i % 200 + 1, i % 199 + 1))
    wall = time.perf_counter() - t0
    path.unlink()
    return wall


def writer_check(path: Path, rows: int) -> None:
    """Why the generator has its own writer: pyarrow.csv versus csvfmt on the same trivial rows."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    i = np.arange(rows)
    cols = [(i // 1125) % 100_000, (i // 15) % 75, i % 48, i % 200 + 1, i % 199 + 1]
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        f.write(b"uid,d,t,x,y\n")
        table = pa.table(dict(zip("udtxy", cols)))
        pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    t_pa = time.perf_counter() - t0
    t_np = io_floor(path, rows)
    print(f"writer check, {rows:,} rows: pyarrow.csv.write_csv {t_pa:.1f} s, csvfmt {t_np:.1f} s "
          f"(csvfmt is {t_pa / t_np:.1f}x faster)")


def realism(out: Path) -> None:
    """Figures of the demo city (defaults: city A, 6,000 users x 28 days) quoted in docs/synthetic_city.md."""
    import pandas as pd

    from training.synth.generate import SynthSettings, generate

    generate(SynthSettings(out=out, workers=2))
    df = pd.read_csv(out / "cityA_challengedata.csv")
    lab = pd.read_csv(out / "labels_cityA.csv")
    n_ud = len(lab) * (df.d.max() + 1)
    per = df.groupby(["uid", "d"]).size()
    print(f"demo city: {len(df):,} rows; {len(df) / n_ud:.1f} records per user-day; per observed user-day mean "
          f"{per.mean():.1f}, p10/p50/p90 {per.quantile(.1):.0f}/{per.median():.0f}/{per.quantile(.9):.0f}; "
          f"user-days observed {len(per) / n_ud:.0%}; masked rows {(df.x == 999).sum():,}")
    m = df[df.x != 999].merge(lab, on="uid")
    home = (m.x == m.home_x) & (m.y == m.home_y)
    work = (m.x == m.work_x) & (m.y == m.work_y) & ~home
    day, wd = m.t.between(20, 33), m.d % 7 < 5
    print(f"at the home cell 0:00-5:00: {home[m.t < 10].mean():.0%}")
    for c in (1, 0):
        s = m.commuter == c
        print(f"commuter={c}: at the work cell 10:00-17:00 on weekdays {work[s & day & wd].mean():.0%}, "
              f"on weekends {work[s & day & ~wd].mean():.0%}")
    km = np.hypot(lab.home_x - lab.work_x, lab.home_y - lab.work_y) / 2
    ck = km[lab.commuter == 1]
    print(f"home-work distance of commuters: median {ck.median():.1f} km, {(ck <= 1).mean():.0%} within 1 km")
    share = work[day & wd].groupby(m.uid[day & wd]).mean().reindex(lab.uid).fillna(0)
    acc = max(((share > th) == (lab.commuter == 1).values).mean() for th in np.linspace(0, 1, 101))
    print(f"best single-feature rule (weekday-daytime share at the labelled work cell > threshold): accuracy {acc:.0%}")
    ms = m.sort_values(["uid", "d", "t"])
    same = (ms.uid.values[1:] == ms.uid.values[:-1]) & (ms.d.values[1:] == ms.d.values[:-1])
    moved = same & ((ms.x.values[1:] != ms.x.values[:-1]) | (ms.y.values[1:] != ms.y.values[:-1]))
    h = ms.t.values[1:] // 2
    rate = np.bincount(h[moved], minlength=24) / np.maximum(np.bincount(h[same], minlength=24), 1)
    print("records by hour (%):", np.round(np.bincount(df.t // 2, minlength=24) / len(df) * 100, 1).tolist())
    print("records in a new cell since the previous one that day, by hour (%):", np.round(rate * 100).astype(int).tolist())


def stages(blocks: int = 10) -> None:
    """CPU per row of each stage of a worker's block (city A, 500-user blocks x 75 days)."""
    from models.grid import cell_xy
    from training.synth import agents, generate as gen, observe
    from training.synth.city import build_city
    from training.synth.routines import plan_days

    city = build_city("A", gen.CITY_SHAPES["A"], gen._seq(0, 0, 0))
    users_all = agents.build_users(city, blocks * gen.BLOCK_USERS, 0, gen._seq(0, 0, 1))
    hol = gen.holidays(0, 75)
    cpu: dict[str, float] = {}
    rows = 0
    for b in range(blocks):
        users = users_all.slice(b * gen.BLOCK_USERS, (b + 1) * gen.BLOCK_USERS)
        rng = gen._seq(0, 0, 2, b)
        t = [time.process_time()]
        plan = plan_days(users, 75, hol, city, rng)
        t.append(time.process_time())
        flat = observe.observed_slots(users, plan, rng)
        t.append(time.process_time())
        x, y = cell_xy(observe.locate(users, plan, flat, rng))
        t.append(time.process_time())
        ud = flat // 48
        observe.jitter(users, ud // 75, x, y, rng)
        words = csvfmt.uid_words(users.uid)[ud // 75]
        t.append(time.process_time())
        csvfmt.rows_bytes(words, ud % 75, flat % 48, x, y)
        t.append(time.process_time())
        for name, a, z in zip(("plans", "observation", "locate", "noise+ids", "format"), t, t[1:]):
            cpu[name] = cpu.get(name, 0.0) + z - a
        rows += len(flat)
    per = ", ".join(f"{k} {v / rows * 1e9:.0f} ns" for k, v in cpu.items())
    print(f"CPU per row by stage ({rows:,} rows): {per}; total {sum(cpu.values()) / rows * 1e9:.0f} ns")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=75)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--writer-check", type=int, default=0, metavar="ROWS",
                    help="also time pyarrow.csv against csvfmt on ROWS trivial rows")
    ap.add_argument("--realism", action="store_true", help="only print the demo city's realism figures")
    ap.add_argument("--stages", action="store_true", help="also print CPU per row of each stage of a block")
    ap.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    a = ap.parse_args()
    print(f"machine: {machine()}")
    scratch = Path(tempfile.mkdtemp(prefix="bench_generate_", dir=a.dir))
    try:
        if a.realism:
            realism(scratch / "demo")
            return
        if a.stages:
            stages()
        if a.writer_check:
            writer_check(scratch / "check.csv", a.writer_check)
        for i in range(a.repeat if a.users > 0 else 0):
            r = run_generate(scratch / "out", a.users, a.days, a.workers)
            floor = io_floor(scratch / "floor.csv", r["rows"])
            print(
                f"run {i + 1}: generate {a.users:,} users x {a.days} days (city A, {a.workers} workers): "
                f"{r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU (main process {r['main_cpu_s']:.1f} s), {r['rows']:,} rows "
                f"({r['bytes'] / 2**30:.2f} GiB), {r['rows'] / r['wall_s'] / 1e6:.2f} M rows/s, "
                f"peak RSS {r['peak_tree_rss'] / 2**30:.2f} GiB (process tree, summed; largest single "
                f"process {r['max_child_rss'] / 2**30:.2f} GiB)"
            )
            print(
                f"       baseline (I/O floor: same writer, trivial array, one process): {floor:.1f} s; "
                f"generate / floor = {r['wall_s'] / floor:.2f}x; targets: <= 60 s "
                f"({'met' if r['wall_s'] <= 60 else 'MISSED'}), <= 4 GiB "
                f"({'met' if r['peak_tree_rss'] <= 4 * 2**30 else 'MISSED'})"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
