"""A bench's scratch folder (workloads, broker and Redis data, worker logs): removed when the bench
finishes, kept and named when it fails or when MOBSTREAM_BENCH_KEEP=1, so repeated runs do not fill /tmp."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def scratch(prefix: str):
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    except BaseException:
        print(f"bench stopped early; its data and logs are kept in {path}", file=sys.stderr)
        raise
    if os.environ.get("MOBSTREAM_BENCH_KEEP") == "1":
        print(f"kept (MOBSTREAM_BENCH_KEEP=1): {path}", file=sys.stderr)
    else:
        shutil.rmtree(path, ignore_errors=True)
