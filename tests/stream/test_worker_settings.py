"""Worker settings that are checked or applied before the worker touches Kafka or Redis."""

import subprocess
import sys
from pathlib import Path

import pytest

from stream.settings import SettingsError, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]


def test_torch_threads_must_not_be_negative():
    with pytest.raises(SettingsError, match=r"torch_threads \(MOBSTREAM_TORCH_THREADS\) = -1"):
        WorkerSettings(bootstrap="b", redis_url="redis://x", torch_threads=-1)
    assert WorkerSettings(bootstrap="b", redis_url="redis://x").torch_threads == 0


def test_redis_timeout_is_at_least_a_second():
    with pytest.raises(SettingsError, match=r"redis_timeout \(MOBSTREAM_REDIS_TIMEOUT\) = 0.5 must be >= 1 second"):
        WorkerSettings(bootstrap="b", redis_url="redis://x", redis_timeout=0.5)
    assert WorkerSettings(bootstrap="b", redis_url="redis://x").redis_timeout == 60.0


@pytest.mark.parametrize("threads,models,expected", [(1, True, 1), (0, True, None), (1, False, None)])
def test_set_torch_threads(threads, models, expected):
    # In a child: torch's thread count is process-wide and other tests must keep theirs.
    forecaster = "Path('f.pt')" if models else None
    code = (
        "import torch; from pathlib import Path; from stream.settings import WorkerSettings; "
        "from stream.worker import set_torch_threads; before = torch.get_num_threads(); "
        f"set_torch_threads(WorkerSettings(bootstrap='b', redis_url='redis://x', torch_threads={threads}, "
        f"forecaster={forecaster})); print(before, torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"}).stdout.split()
    before, after = int(out[0]), int(out[1])
    assert after == (expected if expected is not None else before)
