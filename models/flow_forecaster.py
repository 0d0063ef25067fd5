"""FlowForecaster: the online flow model interface (load a checkpoint, forecast every cell's next 1..H slots).

The stream calls `FlowForecaster.load(path)` once and `.predict(channels, end_slot, cell_ids)` per
closed slot; it returns expected counts (N, H, 3) for slots end_slot + 1 .. end_slot + H. Features come from `models/features.py` exactly as in training, and the POI table and
normalisation statistics come from the checkpoint, so the online side needs no data file.
"""

from __future__ import annotations

import os

import numpy as np

from models import checkpoint
from models.exceptions import CheckpointError
from models.flow_lstm import distinct
from models.features import N_CHANNELS, N_POI, FeatureStats, poi_features, target_offset, window_features
from models.slots import WINDOW_SLOTS

BATCH = 65536


def _families() -> dict:
    from models.flow_linear import FlowLinear, FlowLinearConfig
    from models.flow_lstm import FlowLSTM, FlowLSTMConfig

    return {"flow_lstm": (FlowLSTM, FlowLSTMConfig), "flow_linear": (FlowLinear, FlowLinearConfig)}


def build_model(kind: str, model_args: dict):
    """Rebuild a flow model from its checkpoint `model_args`. Checkpoints written before the multi-horizon
    head have no `horizons` field: they forecast one slot, so they rebuild with horizons=1."""
    cls, cfg = _families()[kind]
    return cls(cfg(**{"horizons": 1, **model_args}))


class FlowForecaster:
    """A loaded flow model plus everything needed to build its inputs."""

    def __init__(self, model, kind: str, version: str, stats: FeatureStats, poi_grid: np.ndarray, extra: dict):
        import torch

        self.kind = kind
        self.version = version
        self.stats = stats
        self.extra = extra
        self.poi_grid = poi_grid  # (G*G, 85) counts
        self.device = checkpoint.device()
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu" and torch.get_num_threads() > (os.cpu_count() or 1):
            torch.set_num_threads(os.cpu_count() or 1)  # more threads than cores only thrash
        with torch.inference_mode():  # each cell's POI part of the model, once for the whole grid
            poi = torch.from_numpy(poi_features(poi_grid, stats)).to(self.device)
            self._static = torch.cat([model.static_part(poi[i : i + BATCH]) for i in range(0, len(poi), BATCH)])  # (G*G, K)
        self._scale = torch.tensor(stats.target_scale, dtype=torch.float32, device=self.device)

    @property
    def horizons(self) -> int:
        """H: predict() forecasts slots end_slot + 1 .. end_slot + H."""
        return int(self.model.config.horizons)

    @classmethod
    def load(cls, path, poi: np.ndarray | None = None) -> "FlowForecaster":
        """Load a flow checkpoint; `poi` (optional) overrides its POI table: (G*G, 85) counts per cell (a model
        trained with cell levels keeps the checkpoint's levels beside it)."""
        payload = checkpoint.load(path, tuple(_families()))
        extra = payload.get("extra", {})
        try:
            model = build_model(payload["kind"], payload["model_args"])
            model.load_state_dict(payload["state_dict"])
            stats = FeatureStats.from_dict(extra["feature_stats"])
            grid = int(extra["grid_size"]) ** 2
            width = int(model.config.n_static)  # 85 POI columns, then N_LEVELS cell levels when trained with them
            table = np.zeros((grid, width), dtype=np.float32)
            table[extra["poi_cells"].numpy()] = extra["poi_counts"].numpy()
        except Exception as exc:
            raise CheckpointError(f"checkpoint {path} does not hold a usable flow model: {exc}") from exc
        if poi is not None:
            poi = np.asarray(poi, dtype=np.float32)
            if poi.shape != (grid, N_POI):
                raise CheckpointError(f"POI table for {path} has shape {poi.shape}, expected ({grid}, {N_POI})")
            table[:, :N_POI] = poi
        return cls(model, payload["kind"], payload["version"], stats, table, extra)

    def predict(self, channels: np.ndarray, end_slot: int, cell_ids: np.ndarray) -> np.ndarray:
        """(N, 8, 3) counts oldest first, the window's last slot, (N,) dense cell ids -> (N, H, 3) expected
        counts, row h-1 for slot end_slot + h."""
        import torch

        channels = np.asarray(channels, dtype=np.float32)
        cell_ids = np.asarray(cell_ids, dtype=np.int64)
        if channels.ndim != 3 or channels.shape[1:] != (WINDOW_SLOTS, N_CHANNELS) or len(cell_ids) != len(channels):
            raise CheckpointError(
                f"predict() takes channels (N, {WINDOW_SLOTS}, {N_CHANNELS}) and cell_ids (N,); "
                f"got {channels.shape} and {cell_ids.shape}"
            )
        if len(cell_ids) and (cell_ids.min() < 0 or cell_ids.max() >= len(self._static)):
            raise CheckpointError(f"cell ids must lie in 0..{len(self._static) - 1} (models.grid.cell_id); got {cell_ids.min()}..{cell_ids.max()}")
        # Identical windows (in a city, most: above all the empty ones) share one pass through the
        # window part; each cell then adds its precomputed POI part. Same numbers as model.forward.
        first, inverse = distinct(channels.reshape(len(channels), -1))
        seq = window_features(channels[first], int(end_slot), self.stats)  # (U, 8, 7)
        out = np.empty((len(channels), self.horizons, N_CHANNELS), dtype=np.float32)
        with torch.inference_mode():
            seq_t = torch.from_numpy(seq).to(self.device)
            win = torch.cat([self.model.window_head(seq_t[i : i + BATCH]) for i in range(0, len(seq), BATCH)]) if len(seq) else None
            inverse_t = torch.from_numpy(inverse.astype(np.int64)).to(self.device)
            cells_t = torch.from_numpy(cell_ids).to(self.device)
            for i in range(0, len(channels), BATCH):
                pre = win[inverse_t[i : i + BATCH]] + self._static[cells_t[i : i + BATCH]]  # (B, K)
                out[i : i + BATCH] = (self.model.finish(pre) * self._scale).cpu().numpy()  # (B, H, 3)
        out += target_offset(channels[:, -1], self.model.config.target)[:, None]  # the last slot, for every horizon
        return np.maximum(out, 0, out=out)
