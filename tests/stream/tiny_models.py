"""Tiny real checkpoints (FlowForecaster / TrajectoryEmbedder families) for phase-2 tests and benches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models import checkpoint
from models.encoder import KIND as ENCODER_KIND
from models.encoder import EncoderConfig, TrajectoryEncoder
from models.features import N_POI, FeatureStats
from models.flow_lstm import FlowLSTM, FlowLSTMConfig

STATS = FeatureStats((0.1, 0.05, 0.05), (0.3, 0.2, 0.2), (1.0, 1.0, 1.0), tuple(np.linspace(0, 1, N_POI)),
                     tuple(np.linspace(1, 2, N_POI)))


def flow_checkpoint(path: Path, seed: int = 1, config: FlowLSTMConfig | None = None) -> str:
    """A randomly initialised flow LSTM saved as `mobstream train flow` saves one; returns its version."""
    torch.manual_seed(seed)
    m = FlowLSTM(config or FlowLSTMConfig())
    extra = {"feature_stats": STATS.to_dict(), "grid_size": 200, "poi_cells": torch.tensor([5, 777]),
             "poi_counts": torch.ones((2, N_POI)), "data_fingerprint": "tiny"}
    return checkpoint.save(path, "flow_lstm", m.config, m, extra=extra)


def encoder_checkpoint(path: Path, seed: int = 1, config: EncoderConfig | None = None) -> str:
    """A randomly initialised trajectory encoder (small unless `config` says otherwise); returns its version."""
    torch.manual_seed(seed)
    cfg = config or EncoderConfig(d_model=32, n_head=2, n_layer=1, lstm_hidden=16, dropout=0.0)
    return checkpoint.save(path, ENCODER_KIND, cfg, TrajectoryEncoder(cfg))
