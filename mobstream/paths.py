"""Default on-disk locations (data, runs, service state), each overridable by a MOBSTREAM_* variable."""

from __future__ import annotations

import os
from pathlib import Path


def _dir(var: str, default: str) -> Path:
    return Path(os.environ.get(var, default)).expanduser()


def data_dir() -> Path:
    """Datasets: the synthetic city lives in data_dir()/synth (MOBSTREAM_DATA_DIR, default ./data)."""
    return _dir("MOBSTREAM_DATA_DIR", "data")


def runs_dir() -> Path:
    """Checkpoints, metrics and reports (MOBSTREAM_RUNS_DIR, default ./runs)."""
    return _dir("MOBSTREAM_RUNS_DIR", "runs")


def state_dir() -> Path:
    """Embedded services' logs, pid files and ports (MOBSTREAM_STATE_DIR, default ./var)."""
    return _dir("MOBSTREAM_STATE_DIR", "var")
