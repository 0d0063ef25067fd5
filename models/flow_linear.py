"""The linear flow baseline: one affine map from the same features FlowLSTM sees, flattened."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.features import N_CHANNELS, N_DYNAMIC, N_POI
from models.flow_lstm import flow_loss
from models.slots import WINDOW_SLOTS


@dataclass(frozen=True)
class FlowLinearConfig:
    n_dynamic: int = N_DYNAMIC
    n_static: int = N_POI
    n_slots: int = WINDOW_SLOTS
    n_out: int = N_CHANNELS
    loss: str = "l1"  # see models.flow_lstm.flow_loss


class FlowLinear(nn.Module):
    def __init__(self, config: FlowLinearConfig):
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.n_slots * config.n_dynamic + config.n_static, config.n_out)

    def forward(self, seq: torch.Tensor, static: torch.Tensor, target: torch.Tensor | None = None):
        x = torch.cat([seq.reshape(len(seq), -1), static], dim=-1)  # (B, 8 * n_dynamic + n_static)
        pred = self.linear(x)  # (B, n_out) scaled counts
        loss = None if target is None else flow_loss(pred, target, self.config.loss)
        return pred, loss

    @torch.inference_mode()
    def predict(self, seq: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        return self.forward(seq, static)[0]
