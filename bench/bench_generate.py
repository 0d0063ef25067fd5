"""Benchmark of `mobstream generate` at full scale (default 100,000 users x 75 days, city A).

Prints wall time, peak memory of the process tree, rows written and rows/s, beside the I/O floor:
the time to format and write the same number of rows of a trivial numpy array with the same writer
(training.synth.csvfmt), measured in the same run. Targets: <= 60 s and <= 4 GB on 2 cores.

    .venv/bin/python bench/bench_generate.py [--users 100000] [--days 75] [--workers 2] [--repeat 1]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=75)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--writer-check", type=int, default=0, metavar="ROWS",
                    help="also time pyarrow.csv against csvfmt on ROWS trivial rows")
    ap.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    a = ap.parse_args()
    print(f"machine: {machine()}")
    scratch = Path(tempfile.mkdtemp(prefix="bench_generate_", dir=a.dir))
    try:
        if a.writer_check:
            writer_check(scratch / "check.csv", a.writer_check)
        for i in range(a.repeat):
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
