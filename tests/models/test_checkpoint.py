"""Checkpoint round trip and the errors for missing, corrupt and wrong-kind files."""

from dataclasses import dataclass

import pytest
import torch

from models import checkpoint
from models.exceptions import CheckpointError


@dataclass(frozen=True)
class Cfg:
    n: int = 3


def test_round_trip_and_errors(tmp_path):
    m = torch.nn.Linear(3, 2)
    p = tmp_path / "m.pt"
    version = checkpoint.save(p, "toy", Cfg(), m, extra={"mean": [1.0, 2.0]})
    got = checkpoint.load(p, "toy")
    assert got["version"] == version and version.startswith("toy-")
    assert got["model_args"] == {"n": 3} and got["extra"]["mean"] == [1.0, 2.0]
    m2 = torch.nn.Linear(3, 2)
    m2.load_state_dict(got["state_dict"])
    assert torch.equal(m2.weight, m.weight)
    with pytest.raises(CheckpointError, match="holds a 'toy' model"):
        checkpoint.load(p, "flow_lstm")
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.pt", "toy")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(p.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="corrupt"):
        checkpoint.load(bad, "toy")
