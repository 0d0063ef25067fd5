"""FlowForecaster: the online flow model interface (load a checkpoint, forecast every cell's next slot).

The stream calls `FlowForecaster.load(path)` once and `.predict(channels, end_slot, cell_ids)` per
closed slot. Features come from `models/features.py` exactly as in training, and the POI table and
normalisation statistics come from the checkpoint, so the online side needs no data file.
"""

from __future__ import annotations

import os

import numpy as np

from models import checkpoint
from models.exceptions import CheckpointError
from models.features import N_CHANNELS, N_POI, FeatureStats, model_input, poi_features
from models.slots import WINDOW_SLOTS

BATCH = 65536


def _families() -> dict:
    from models.flow_linear import FlowLinear, FlowLinearConfig
    from models.flow_lstm import FlowLSTM, FlowLSTMConfig

    return {"flow_lstm": (FlowLSTM, FlowLSTMConfig), "flow_linear": (FlowLinear, FlowLinearConfig)}


def build_model(kind: str, model_args: dict):
    """Rebuild a flow model from its checkpoint `model_args`."""
    cls, cfg = _families()[kind]
    return cls(cfg(**model_args))


class FlowForecaster:
    """A loaded flow model plus everything needed to build its inputs."""

    def __init__(self, model, kind: str, version: str, stats: FeatureStats, poi_grid: np.ndarray, extra: dict):
        import torch

        self.kind = kind
        self.version = version
        self.stats = stats
        self.extra = extra
        self.device = checkpoint.device()
        self.model = model.to(self.device).eval()
        self._poi = poi_features(poi_grid, stats)  # (G*G, 85) normalised once, indexed per call
        if self.device.type == "cpu" and torch.get_num_threads() > (os.cpu_count() or 1):
            torch.set_num_threads(os.cpu_count() or 1)  # more threads than cores only thrash

    @classmethod
    def load(cls, path, poi: np.ndarray | None = None) -> "FlowForecaster":
        """Load a flow checkpoint; `poi` (optional) overrides its POI table: (G*G, 85) counts per cell."""
        payload = checkpoint.load(path, tuple(_families()))
        extra = payload.get("extra", {})
        try:
            model = build_model(payload["kind"], payload["model_args"])
            model.load_state_dict(payload["state_dict"])
            stats = FeatureStats.from_dict(extra["feature_stats"])
            grid = int(extra["grid_size"]) ** 2
            if poi is None:
                poi = np.zeros((grid, N_POI), dtype=np.float32)
                poi[extra["poi_cells"].numpy()] = extra["poi_counts"].numpy()
        except Exception as exc:
            raise CheckpointError(f"checkpoint {path} does not hold a usable flow model: {exc}") from exc
        poi = np.asarray(poi, dtype=np.float32)
        if poi.shape != (grid, N_POI):
            raise CheckpointError(f"POI table for {path} has shape {poi.shape}, expected ({grid}, {N_POI})")
        return cls(model, payload["kind"], payload["version"], stats, poi, extra)

    def predict(self, channels: np.ndarray, end_slot: int, cell_ids: np.ndarray) -> np.ndarray:
        """(N, 8, 3) counts oldest first, the window's last slot, (N,) dense cell ids -> (N, 3) counts for end_slot + 1."""
        import torch

        channels = np.asarray(channels, dtype=np.float32)
        cell_ids = np.asarray(cell_ids, dtype=np.int64)
        if channels.ndim != 3 or channels.shape[1:] != (WINDOW_SLOTS, N_CHANNELS) or len(cell_ids) != len(channels):
            raise CheckpointError(
                f"predict() takes channels (N, {WINDOW_SLOTS}, {N_CHANNELS}) and cell_ids (N,); "
                f"got {channels.shape} and {cell_ids.shape}"
            )
        if len(cell_ids) and (cell_ids.min() < 0 or cell_ids.max() >= len(self._poi)):
            raise CheckpointError(f"cell ids must lie in 0..{len(self._poi) - 1} (models.grid.cell_id); got {cell_ids.min()}..{cell_ids.max()}")
        out = np.empty((len(channels), N_CHANNELS), dtype=np.float32)
        scale = torch.tensor(self.stats.target_scale, dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            for i in range(0, len(channels), BATCH):
                seq, static = model_input(channels[i : i + BATCH], int(end_slot), self._poi[cell_ids[i : i + BATCH]], self.stats)
                pred = self.model.predict(torch.from_numpy(seq).to(self.device), torch.from_numpy(static).to(self.device))
                out[i : i + BATCH] = (pred * scale).clamp_min(0).cpu().numpy()
        return out
