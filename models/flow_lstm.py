"""FlowLSTM: forecasts a cell's next-slot flow channels from its 8-slot window and its POI features.

The LSTM reads only the per-slot features (channels + time); the cell's static POI features join
after it, in the head. Identical windows then share one LSTM pass, which lets the online side
score a 40,000-cell grid per slot (most cells' windows repeat, above all the empty ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.features import N_CHANNELS, N_DYNAMIC, N_POI


@dataclass(frozen=True)
class FlowLSTMConfig:
    n_dynamic: int = N_DYNAMIC
    n_static: int = N_POI
    n_out: int = N_CHANNELS
    hidden: int = 64
    n_layers: int = 2
    static_dim: int = 16
    head_dim: int = 64
    dropout: float = 0.0
    loss: str = "l1"  # see flow_loss


LOSSES = {"l1": F.l1_loss, "huber": F.smooth_l1_loss, "mse": F.mse_loss}


def flow_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss on scaled counts. l1 (default) targets the conditional median, which is what minimises MAE
    on sparse counts; mse targets the mean (best for MSE/RMSE); huber sits between."""
    return LOSSES[kind](pred, target)


def distinct_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of each distinct row's first occurrence, and each row's distinct index (exact, bytewise).

    numpy's sort of rows viewed as opaque bytes is ~100x faster on CPU than torch.unique(dim=0).
    """
    rows = np.ascontiguousarray(x.detach().reshape(len(x), -1).cpu().numpy())  # (B, F)
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()  # (B,)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    to = lambda a: torch.from_numpy(a.astype(np.int64).ravel()).to(x.device)  # noqa: E731
    return to(first), to(inverse)


class FlowLSTM(nn.Module):
    def __init__(self, config: FlowLSTMConfig):
        super().__init__()
        self.config = config
        c = config
        self.lstm = nn.LSTM(c.n_dynamic, c.hidden, c.n_layers, batch_first=True, dropout=c.dropout if c.n_layers > 1 else 0.0)
        self.static = nn.Sequential(nn.Linear(c.n_static, c.static_dim), nn.GELU())
        self.head = nn.Sequential(nn.Linear(c.hidden + c.static_dim + c.n_dynamic, c.head_dim), nn.GELU(), nn.Linear(c.head_dim, c.n_out))

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, 8, n_dynamic) -> (B, hidden): the LSTM state after the window's last slot."""
        out, _ = self.lstm(seq)  # (B, 8, hidden)
        return out[:, -1]

    def decode(self, h: torch.Tensor, seq: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        # The last slot's raw features go straight to the head too, so "like the last slot" is easy.
        z = torch.cat([h, self.static(static), seq[:, -1]], dim=-1)  # (B, hidden + static_dim + n_dynamic)
        return self.head(z)  # (B, n_out) scaled counts

    def encode_distinct(self, seq: torch.Tensor) -> torch.Tensor:
        """encode() with one LSTM pass per distinct window (gradients flow through the gather)."""
        first, inverse = distinct_rows(seq)
        return self.encode(seq[first])[inverse]  # (U, 8, n_dynamic) -> (U, hidden) -> (B, hidden)

    def forward(self, seq: torch.Tensor, static: torch.Tensor, target: torch.Tensor | None = None):
        pred = self.decode(self.encode_distinct(seq), seq, static)
        loss = None if target is None else flow_loss(pred, target, self.config.loss)
        return pred, loss

    @torch.inference_mode()
    def predict(self, seq: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        return self.forward(seq, static)[0]
