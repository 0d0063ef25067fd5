"""The linear flow baseline: one affine map from the same features FlowLSTM sees, flattened (log-linear under the Poisson loss)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.features import N_CHANNELS, N_DYNAMIC, N_POI
from models.flow_lstm import check_config, flow_loss, link
from models.slots import WINDOW_SLOTS


@dataclass(frozen=True)
class FlowLinearConfig:
    n_dynamic: int = N_DYNAMIC
    n_static: int = N_POI
    n_slots: int = WINDOW_SLOTS
    n_out: int = N_CHANNELS
    loss: str = "poisson"  # see models.flow_lstm.flow_loss
    target: str = "level"  # see models.features.target_offset
    horizons: int = 4  # see FlowLSTMConfig


class FlowLinear(nn.Module):
    def __init__(self, config: FlowLinearConfig):
        super().__init__()
        check_config(config.loss, config.target, config.horizons)
        self.config = config
        self.linear = nn.Linear(config.n_slots * config.n_dynamic + config.n_static, config.horizons * config.n_out)

    # Split by input like FlowLSTM: the POI columns once per cell, the window columns once per distinct window.
    def static_part(self, static: torch.Tensor) -> torch.Tensor:
        """(C, n_static) -> (C, H * n_out): the POI columns, bias included."""
        c = self.config
        return F.linear(static, self.linear.weight[:, c.n_slots * c.n_dynamic :], self.linear.bias)

    def window_head(self, seq: torch.Tensor) -> torch.Tensor:
        """(U, 8, n_dynamic) -> (U, H * n_out): the window columns."""
        c = self.config
        return seq.reshape(len(seq), -1) @ self.linear.weight[:, : c.n_slots * c.n_dynamic].T  # (U, 8 * n_dynamic) -> (U, H * n_out)

    def finish(self, pre: torch.Tensor) -> torch.Tensor:
        """(B, H * n_out) -> (B, H, n_out) scaled counts."""
        c = self.config
        return link(pre.reshape(len(pre), c.horizons, c.n_out), c.loss)

    def forward(self, seq: torch.Tensor, static: torch.Tensor, target: torch.Tensor | None = None):
        pred = self.finish(self.window_head(seq) + self.static_part(static))  # (B, H, n_out) scaled counts
        loss = None if target is None else flow_loss(pred, target, self.config.loss)
        return pred, loss

    @torch.inference_mode()
    def predict(self, seq: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        return self.forward(seq, static)[0]
