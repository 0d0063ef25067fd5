"""The hybrid transformer-LSTM trajectory encoder: an 8-slot window -> a 512-d embedding (+ its training head).

Input `x` (B, T, 5) int64 per slot: cell x, cell y (1..200), slot of day (0..47), day of week
(0..6, 0 = Monday), observed (1/0). The mask rides in the input so forward keeps nanoGPT's
forward(x, target=None) -> (pred, loss) shape; an unobserved slot's cell is never read.

  spatial stream  = x-embedding + y-embedding + 5 km block embedding (+ Gaussian noise in training);
                    an unobserved slot gets one learned "missing" vector instead, so its cell never matters
  temporal stream = slot-of-day + day-of-week + position embeddings
  cross-attention = each stream attends to the other (keys of unobserved slots masked), summed
  transformer     = pre-LN blocks with key-padding masks
  BiLSTM          = 256 hidden per direction over the OBSERVED slots only (packed, in time order)
  embedding       = masked mean of the BiLSTM outputs: (B, 2 * 256 = 512); all-masked -> zeros
  head (seq2seq)  = from the embedding and the next window's slot times, x and y logits of each of the
                    next window's 8 slots; loss = cross-entropy over the next window's observed slots
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

KIND = "traj_encoder"


@dataclass(frozen=True)
class EncoderConfig:
    grid: int = 200
    window: int = 8
    d_model: int = 64
    n_head: int = 4
    n_layer: int = 2
    lstm_hidden: int = 256
    block: int = 10  # cells per side of the coarse block embedding (10 cells = 5 km)
    dropout: float = 0.1
    noise_std: float = 0.1  # Gaussian noise added to the spatial embedding while training (augmentation)

    @property
    def dim(self) -> int:
        return 2 * self.lstm_hidden


class SpatialEmbedding(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        nb = math.ceil(cfg.grid / cfg.block)
        self.ex = nn.Embedding(cfg.grid + 1, cfg.d_model)
        self.ey = nn.Embedding(cfg.grid + 1, cfg.d_model)
        self.eb = nn.Embedding(nb * nb + 1, cfg.d_model)
        self.missing = nn.Parameter(torch.zeros(cfg.d_model))

    def forward(self, cx: torch.Tensor, cy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        nb = math.ceil(self.cfg.grid / self.cfg.block)
        cx, cy = cx * mask, cy * mask  # unobserved slots read index 0 whatever they hold
        blk = torch.where(mask, ((cy - 1).clamp(min=0) // self.cfg.block) * nb + (cx - 1).clamp(min=0) // self.cfg.block + 1, 0)
        s = self.ex(cx) + self.ey(cy) + self.eb(blk)  # (B, T, C)
        if self.training and self.cfg.noise_std > 0:
            s = s + self.cfg.noise_std * torch.randn_like(s)
        return torch.where(mask.unsqueeze(-1), s, self.missing)


class TemporalEmbedding(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.tod = nn.Embedding(48, cfg.d_model)
        self.dow = nn.Embedding(7, cfg.d_model)
        self.pos = nn.Embedding(cfg.window, cfg.d_model)

    def forward(self, tod: torch.Tensor, dow: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(tod.shape[1], device=tod.device)
        return self.tod(tod) + self.dow(dow) + self.pos(pos)  # (B, T, C)


class Attention(nn.Module):
    """Multi-head attention of queries `q` over keys/values `kv`; `keep` (B, T) False hides a key."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, q: torch.Tensor, kv: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        B, T, C = q.shape
        H = self.n_head
        k, v = self.kv(kv).split(C, dim=2)
        q = self.q(q).view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, C/H)
        k = k.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, C/H)
        v = v.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, C/H)
        attn_mask = keep[:, None, None, :]  # (B, 1, 1, T): True = may attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.proj = nn.Linear(4 * cfg.d_model, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class CrossBlock(nn.Module):
    """Spatial attends to temporal and temporal to spatial; the two updated streams are summed."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.ln_s, self.ln_t = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.s_from_t, self.t_from_s = Attention(cfg), Attention(cfg)

    def forward(self, s: torch.Tensor, t: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        ls, lt = self.ln_s(s), self.ln_t(t)
        return s + self.s_from_t(ls, lt, keep) + t + self.t_from_s(lt, ls, keep)  # (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn, self.mlp = Attention(cfg), MLP(cfg)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, keep)
        return x + self.mlp(self.ln_2(x))


class TrajectoryEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.spatial, self.temporal = SpatialEmbedding(cfg), TemporalEmbedding(cfg)
        self.cross = CrossBlock(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lstm = nn.LSTM(cfg.d_model, cfg.lstm_hidden, batch_first=True, bidirectional=True)
        # seq2seq head: embedding + the next window's slot times -> x and y logits per next slot
        self.head_time = TemporalEmbedding(cfg)
        self.head_in = nn.Linear(cfg.dim, cfg.d_model * 4)
        self.head_t = nn.Linear(cfg.d_model, cfg.d_model * 4)
        self.head_out = nn.Linear(cfg.d_model * 4, 2 * cfg.grid)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 5) windows -> (B, 512) embeddings."""
        B, T, _ = x.shape
        mask = x[..., 4] > 0  # (B, T)
        # A window with no observation would leave attention nothing to attend to (NaN); let it attend to
        # its "missing" slots, which carry no cell information, and pool it to zeros below.
        keep = mask | ~mask.any(dim=1, keepdim=True)
        s = self.spatial(x[..., 0], x[..., 1], mask)
        t = self.temporal(x[..., 2], x[..., 3])
        h = self.cross(s, t, keep)
        for block in self.blocks:
            h = block(h, keep)
        h = self.ln_f(h)  # (B, T, C)
        # Move observed slots to the front (time order kept) so the packed LSTM sees only real observations.
        n_obs = mask.sum(dim=1)  # (B,)
        order = torch.argsort((~mask).long(), dim=1, stable=True)  # (B, T)
        h = torch.gather(h, 1, order.unsqueeze(-1).expand(B, T, h.shape[-1]))  # (B, T, C)
        packed = pack_padded_sequence(h, n_obs.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, 512), zeros past n_obs
        return out.sum(dim=1) / n_obs.clamp(min=1).unsqueeze(-1) * (n_obs > 0).unsqueeze(-1)  # (B, 512)

    def next_times(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slot of day and day of week of the next window's T slots, from the current window's last slot."""
        T = x.shape[1]
        step = torch.arange(1, T + 1, device=x.device)
        tod = x[:, -1:, 2] + step  # (B, T)
        return tod % 48, (x[:, -1:, 3] + tod // 48) % 7

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None):
        """pred: (B, T, 2, grid) logits of the next window's x and y.

        target (B, T, 2): the next window's cells, 0 where the slot is not observed (left out of the loss).
        """
        B, T, _ = x.shape
        e = self.embed(x)  # (B, 512)
        tod, dow = self.next_times(x)
        h = F.gelu(self.head_in(e).unsqueeze(1) + self.head_t(self.head_time(tod, dow)))  # (B, T, 4C)
        pred = self.head_out(h).view(B, T, 2, self.cfg.grid)  # (B, T, 2, grid)
        if target is None:
            return pred, None
        seen = target[..., 0] > 0  # (B, T)
        if not bool(seen.any()):
            return pred, pred.sum() * 0.0
        logits = pred[seen]  # (N, 2, grid)
        tgt = target[seen] - 1  # (N, 2), 0-based classes
        loss = F.cross_entropy(logits[:, 0], tgt[:, 0]) + F.cross_entropy(logits[:, 1], tgt[:, 1])
        return pred, loss
