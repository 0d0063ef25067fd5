"""FlowLSTM: forecasts a cell's flow channels 1..H slots ahead from its 8-slot window and its POI features.

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
    loss: str = "poisson"  # see flow_loss
    target: str = "level"  # or "change" from the window's last slot: models.features.target_offset
    horizons: int = 4  # slots ahead forecast at once; checkpoints without the field hold 1 (models.flow_forecaster)


def _poisson(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.poisson_nll_loss(pred, target, log_input=False, eps=1e-6)


# poisson and mse target the conditional mean (expected counts); l1 the median (0 on sparse cells); huber between.
LOSSES = {"poisson": _poisson, "mse": F.mse_loss, "l1": F.l1_loss, "huber": F.smooth_l1_loss}
MAX_LOG_RATE = 12.0  # exp(12) ~ 160,000 x the channel scale: far above any cell count, keeps exp finite


def flow_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss on scaled counts (B, H, n_out). Poisson NLL (the default) on count / scale has the same
    minimiser as on counts, the conditional mean; it weighs an error on a busy cell less than MSE does."""
    return LOSSES[kind](pred, target)


def link(raw: torch.Tensor, loss: str) -> torch.Tensor:
    """The output layer's values -> scaled counts: exp (a log link, always > 0) for the Poisson loss, else as is."""
    return torch.exp(raw.clamp(max=MAX_LOG_RATE)) if loss == "poisson" else raw


def check_config(loss: str, target: str, horizons: int) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss {loss!r} must be one of {', '.join(LOSSES)}")
    if loss == "poisson" and target != "level":
        raise ValueError("the poisson loss forecasts counts (target level); a change can be negative")
    if horizons < 1:
        raise ValueError(f"horizons must be >= 1, got {horizons}")


_HASH = np.random.default_rng(0).integers(1, 2**63, 4096, dtype=np.uint64) | np.uint64(1)  # odd multipliers


def distinct(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact distinct rows of a 2-D array: each distinct row's first index, and each row's distinct index.

    Rows are hashed to one uint64 (a wrapping dot product of their 4-byte words with fixed odd
    multipliers) and the hashes sorted, ~10x faster than sorting whole rows; a collision, checked
    for, falls back to the bytewise sort, so the answer is always exact.
    """
    rows = np.ascontiguousarray(rows)
    words = rows.view(np.uint32).reshape(len(rows), -1)  # (B, W)
    if words.shape[1] <= len(_HASH):
        with np.errstate(over="ignore"):
            h = words.astype(np.uint64) @ _HASH[: words.shape[1]]  # (B,) wraps mod 2^64
        _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        if np.array_equal(rows[first][inverse], rows):
            return first, inverse
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()  # (B,)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def distinct_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`distinct` for a tensor's rows (all but the first dimension flattened), as int64 tensors on its device."""
    first, inverse = distinct(x.detach().reshape(len(x), -1).cpu().numpy())
    to = lambda a: torch.from_numpy(a.astype(np.int64)).to(x.device)  # noqa: E731
    return to(first), to(inverse)


class FlowLSTM(nn.Module):
    def __init__(self, config: FlowLSTMConfig):
        super().__init__()
        check_config(config.loss, config.target, config.horizons)
        self.config = config
        c = config
        self.lstm = nn.LSTM(c.n_dynamic, c.hidden, c.n_layers, batch_first=True, dropout=c.dropout if c.n_layers > 1 else 0.0)
        self.static = nn.Sequential(nn.Linear(c.n_static, c.static_dim), nn.GELU())
        self.head = nn.Sequential(nn.Linear(c.hidden + c.static_dim + c.n_dynamic, c.head_dim), nn.GELU(), nn.Linear(c.head_dim, c.horizons * c.n_out))

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, 8, n_dynamic) -> (B, hidden): the LSTM state after the window's last slot."""
        out, _ = self.lstm(seq)  # (B, 8, hidden)
        return out[:, -1]

    def decode(self, h: torch.Tensor, seq: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        return self.finish(self.window_part(h, seq) + self.static_part(static))  # (B, H, n_out) scaled counts

    # The head's first layer is split by input: its POI columns depend on the cell only, so the
    # online side computes static_part once per cell, and window_part once per distinct window.
    def static_part(self, static: torch.Tensor) -> torch.Tensor:
        """(C, n_static) -> (C, head_dim): the POI columns of the head's first layer, bias included."""
        c, first = self.config, self.head[0]
        return F.linear(self.static(static), first.weight[:, c.hidden : c.hidden + c.static_dim], first.bias)

    def window_part(self, h: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """(U, hidden) LSTM states and their (U, 8, n_dynamic) windows -> (U, head_dim): the head's other columns.

        The last slot's raw features go straight to the head too, so "like the last slot" is easy.
        """
        c, w = self.config, self.head[0].weight
        return h @ w[:, : c.hidden].T + seq[:, -1] @ w[:, c.hidden + c.static_dim :].T

    def finish(self, pre: torch.Tensor) -> torch.Tensor:
        """(B, head_dim) first-layer pre-activations -> (B, H, n_out) scaled counts, H = horizons."""
        c = self.config
        raw = self.head[2](self.head[1](pre)).reshape(len(pre), c.horizons, c.n_out)  # (B, H * n_out) -> (B, H, n_out)
        return link(raw, c.loss)

    def window_head(self, seq: torch.Tensor) -> torch.Tensor:
        """(U, 8, n_dynamic) distinct windows -> (U, head_dim), for `finish(window_head[inverse] + static_part)`."""
        return self.window_part(self.encode(seq), seq)

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
