"""Checkpoint files for every model: weights plus everything a reader needs to rebuild the model.

A checkpoint is a `torch.save` dict with plain-data fields only, loaded with `weights_only=True`:
  kind          the model family, e.g. "flow_lstm", "flow_linear", "traj_encoder", "raw_gpt"
  version       a model version string carried by every online output (kind-YYYYmmddTHHMMSS-hash)
  model_args    the config dataclass as a dict (the model is rebuilt from it)
  state_dict    the weights
  extra         anything else the reader needs (normalisation statistics, data fingerprint, ...)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from models.exceptions import CheckpointError

FORMAT = 1


def make_version(kind: str, state_dict: dict[str, torch.Tensor]) -> str:
    """A readable, unique version: kind, UTC time, and a short hash of the weights."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        h.update(name.encode())
        h.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{kind}-{stamp}-{h.hexdigest()[:8]}"


def save(path: str | Path, kind: str, config: Any, model: torch.nn.Module, extra: dict | None = None) -> str:
    """Write a checkpoint atomically (tmp file + rename, so a watcher never reads half a file)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    version = make_version(kind, state)
    payload = {
        "format": FORMAT,
        "kind": kind,
        "version": version,
        "model_args": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config),
        "state_dict": state,
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return version


def load(path: str | Path, kind: str | tuple[str, ...]) -> dict:
    """Read a checkpoint of the expected kind(s); a clear CheckpointError for anything else."""
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a mobstream checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or "kind" not in payload or "state_dict" not in payload:
        raise CheckpointError(f"checkpoint {path} is not a mobstream checkpoint (no 'kind'/'state_dict' fields)")
    if payload["kind"] not in kinds:
        raise CheckpointError(f"checkpoint {path} holds a {payload['kind']!r} model, expected {' or '.join(kinds)}")
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {payload.get('format')!r}, this build reads {FORMAT}")
    return payload


def device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
