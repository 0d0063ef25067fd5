"""Reader throughput: rows/s of training.readers on a generated YJMob-format file, beside plain pyarrow and pandas.

    .venv/bin/python bench/readers_throughput.py [--rows 20000000] [--dir /tmp] [--repeat 3]

Prints, for plain CSV, CSV with sparse bad rows (lenient), and CSV.gz: the reader's rows/s, the
baseline measured in the same run (pyarrow.csv.read_csv of the whole file with the same explicit
int64 types and no validation; pandas.read_csv with explicit dtypes), and the ratio.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.csv as pcsv

from training.readers import ReadSummary, read_chunks

COLS = ["uid", "d", "t", "x", "y"]


def make_file(path: Path, rows: int, bad_every: int = 0, seed: int = 0) -> None:
    """Sorted (uid, d, t) records, 5% masked, one bad row every `bad_every` rows if set."""
    rng = np.random.default_rng(seed)
    step = 1 << 22
    with open(path, "wb") as f:
        f.write(b"uid,d,t,x,y\n")
        for start in range(0, rows, step):
            n = min(step, rows - start)
            k = np.arange(start, start + n, dtype=np.int64)
            uid, rest = k // 3000, k % 3000  # 3000 distinct (d, t) per user: unique, sorted keys
            d, t = rest // 48, rest % 48
            x, y = rng.integers(1, 201, n), rng.integers(1, 201, n)
            m = rng.random(n) < 0.05
            x[m], y[m] = 999, 999
            table = pa.table({"uid": uid, "d": d, "t": t, "x": x, "y": y})
            buf = pa.BufferOutputStream()
            pcsv.write_csv(table, buf, pcsv.WriteOptions(include_header=False))
            data = buf.getvalue().to_pybytes()
            if bad_every:
                lines = data.split(b"\n")
                for i in range(bad_every // 2, len(lines) - 1, bad_every):
                    lines[i] = lines[i].rsplit(b",", 1)[0] + b",abc"
                data = b"\n".join(lines)
            f.write(data)


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def ours(path: Path, strict: bool = True) -> int:
    s = ReadSummary()
    n = sum(len(c["uid"]) for c in read_chunks(path, strict=strict, summary=s))
    return n


def plain_pyarrow(path: Path) -> int:
    co = pcsv.ConvertOptions(column_types={c: pa.int64() for c in COLS})
    return pcsv.read_csv(str(path), convert_options=co).num_rows


def plain_pandas(path: Path) -> int:
    return len(pd.read_csv(path, dtype={c: "int64" for c in COLS}, engine="c"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    work = Path(a.dir) / f"mobstream-bench-readers-{os.getpid()}"
    work.mkdir(parents=True)
    try:
        clean, dirty, gz = work / "clean.csv", work / "dirty.csv", work / "clean.csv.gz"
        make_file(clean, a.rows)
        make_file(dirty, a.rows, bad_every=100_000)
        with open(clean, "rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst, 1 << 24)
        print(f"machine: {platform.machine()}, {psutil.cpu_count()} cpus, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
              f"pyarrow {pa.__version__}, pandas {pd.__version__}")
        print(f"file: {a.rows:,} rows, {clean.stat().st_size / 2**20:.0f} MiB plain, {gz.stat().st_size / 2**20:.0f} MiB gzip; best of {a.repeat}")
        base = timed(lambda: plain_pyarrow(clean), a.repeat)
        pand = timed(lambda: plain_pandas(clean), 1)
        rows = [
            ("plain CSV, strict", timed(lambda: ours(clean), a.repeat)),
            ("CSV, 1 bad row / 100k, lenient", timed(lambda: ours(dirty, strict=False), a.repeat)),
            ("CSV.gz, strict", timed(lambda: ours(gz), a.repeat)),
        ]
        print(f"baseline pyarrow.csv.read_csv (no validation): {a.rows / base / 1e6:6.1f} M rows/s")
        print(f"baseline pandas.read_csv (dtypes, 1 run):      {a.rows / pand / 1e6:6.1f} M rows/s")
        for name, sec in rows:
            print(f"readers, {name:32s} {a.rows / sec / 1e6:6.1f} M rows/s  "
                  f"(x{base / sec:.2f} of pyarrow, x{pand / sec:.2f} of pandas)")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
