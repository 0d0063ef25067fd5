"""The hybrid transformer-LSTM trajectory encoder: an 8-slot window -> a 512-d embedding (+ its training head).

Input `x` (B, T, 5) int64 per slot: cell x, cell y (1..200), slot of day (0..47), day of week
(0..6, 0 = Monday), observed (1/0). The mask rides in the input so forward keeps nanoGPT's
forward(x, target=None) -> (pred, loss) shape; an unobserved slot's cell is never read.

  stays           = consecutive observations in the same cell merge into one token (the window's
                    stay points: 1.8 tokens per window on the demo city instead of 8 slots)
  spatial stream  = x-embedding + y-embedding + 5 km block embedding + a projection of the cell's POI
                    vector (models.features, stored in the checkpoint) (+ Gaussian noise in training)
  temporal stream = slot of day + day of week of the stay's first observation, its length in slots, position
  cross-attention = each stream attends to the other, summed
  transformer     = pre-LN blocks
  BiLSTM          = 256 hidden per direction over the stays, in time order
  embedding       = mean of the BiLSTM outputs weighted by each stay's observations: (B, 2 * 256 = 512);
                    a window without observation -> zeros
  head (seq2seq)  = from the embedding and the next window's slot times, x and y logits and the POI vector
                    of each of the next window's 8 slots; loss = cross-entropy (x, y) + squared error (POI)
                    over the next window's observed slots

Windows are grouped by their number of stays and each group runs dense (no padding, no masks), so the
cost is proportional to the stays, not to 8 slots per window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

KIND = "traj_encoder"
FORMAT = 2  # 2: stay tokens + POI vectors; checkpoints of format 1 (slot tokens) cannot be read


@dataclass(frozen=True)
class EncoderConfig:
    grid: int = 200
    window: int = 8
    d_model: int = 32  # narrow: the stays are few and the BiLSTM-256 holds the embedding
    n_head: int = 4
    n_layer: int = 2
    lstm_hidden: int = 256
    block: int = 10  # cells per side of the coarse block embedding (10 cells = 5 km)
    n_poi: int = 85  # POI categories of the per-cell POI vector
    dropout: float = 0.1
    noise_std: float = 0.1  # Gaussian noise added to the spatial embedding while training (augmentation)
    format: int = FORMAT

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
        # Normalised POI features per cell (row 0: no cell); zeros until `set_poi`, saved with the weights.
        self.register_buffer("poi", torch.zeros(cfg.grid * cfg.grid + 1, cfg.n_poi))
        self.poi_proj = nn.Linear(cfg.n_poi, cfg.d_model, bias=False)

    def forward(self, cx: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
        """Cells (..., ) 1-based -> (..., C); cell 0 (padding) reads row 0 of every table."""
        nb = math.ceil(self.cfg.grid / self.cfg.block)
        real = cx > 0
        blk = torch.where(real, ((cy - 1).clamp(min=0) // self.cfg.block) * nb + (cx - 1).clamp(min=0) // self.cfg.block + 1, 0)
        cell = torch.where(real, (cy - 1) * self.cfg.grid + cx, 0)
        s = self.ex(cx) + self.ey(cy) + self.eb(blk) + self.poi_proj(self.poi[cell])
        if self.training and self.cfg.noise_std > 0:
            s = s + self.cfg.noise_std * torch.randn_like(s)
        return s


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
    """Multi-head attention of queries `q` over keys/values `kv` (all positions valid)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        B, T, C = q.shape
        H = self.n_head
        k, v = self.kv(kv).split(C, dim=2)
        if T == 1:  # one key: softmax is 1, attention is the value itself
            return self.proj(v)
        q = self.q(q).view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, C/H)
        k = k.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, C/H)
        v = v.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, C/H)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
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

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ls, lt = self.ln_s(s), self.ln_t(t)
        return s + self.s_from_t(ls, lt) + t + self.t_from_s(lt, ls)  # (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn, self.mlp = Attention(cfg), MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h)
        return x + self.mlp(self.ln_2(x))


def lstm_steps(gates_in: torch.Tensor, w_hh: torch.Tensor, order) -> torch.Tensor:
    """One LSTM direction from a zero state: gates_in (B, T, 4H) = W_ih x + biases -> outputs (B, T, H).

    PyTorch's gate order (i, f, g, o). The first step skips W_hh h and f * c, which are zero from a zero
    state: most windows hold one or two stays, so this halves the recurrent cost.
    """
    out: dict[int, torch.Tensor] = {}
    h = c = None
    H = w_hh.shape[1]
    for t in order:
        g = gates_in[:, t] if h is None else torch.addmm(gates_in[:, t], h, w_hh.t())
        i, f, gg, o = g.split(H, dim=1)
        c = torch.sigmoid(i) * torch.tanh(gg) if c is None else torch.addcmul(torch.sigmoid(f) * c, torch.sigmoid(i), torch.tanh(gg))
        h = torch.sigmoid(o) * torch.tanh(c)
        out[t] = h
    return torch.stack([out[t] for t in sorted(out)], dim=1)


def stays(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Slots (B, T, 5) -> stay tokens, left-aligned in time order: cell x, cell y, slot of day and day of
    week of the stay's first observation, length in slots (1..T), observations (0 = no token), and the
    number of stays per window (B,). A stay = consecutive observations (gaps allowed) in one cell."""
    B, T, _ = x.shape
    mask = x[..., 4] > 0  # (B, T)
    t_idx = torch.arange(T, device=x.device).expand(B, T)
    cell = x[..., 0] * 1024 + x[..., 1]
    last = torch.cummax(torch.where(mask, t_idx, -1), dim=1).values  # (B, T) last observed slot <= t
    prev = torch.cat([torch.full((B, 1), -1, device=x.device, dtype=last.dtype), last[:, :-1]], dim=1)
    start = mask & ((prev < 0) | (torch.gather(cell, 1, prev.clamp(min=0)) != cell))  # (B, T) first slot of a stay
    run = torch.cumsum(start.long(), dim=1) - 1  # (B, T) stay index of each observed slot
    n = start.sum(dim=1)  # (B,)
    dump = torch.full_like(run, T)  # unobserved / non-start slots write into a dropped column T
    at_start, at_obs = torch.where(start, run, dump), torch.where(mask, run, dump)

    def scatter(values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return torch.zeros(B, T + 1, dtype=values.dtype, device=x.device).scatter_(1, idx, values)[:, :T]

    first = scatter(t_idx, at_start)
    end = torch.zeros(B, T + 1, dtype=t_idx.dtype, device=x.device).scatter_reduce_(1, at_obs, t_idx, "amax")[:, :T]
    count = torch.zeros(B, T + 1, dtype=x.dtype, device=x.device).scatter_add_(1, at_obs, mask.to(x.dtype))[:, :T]
    tok = [scatter(x[..., j], at_start) for j in range(4)]
    return tok[0], tok[1], tok[2], tok[3], (end - first + 1).clamp(min=1), count, n


class TrajectoryEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.spatial, self.temporal = SpatialEmbedding(cfg), TemporalEmbedding(cfg)
        self.length = nn.Embedding(cfg.window + 1, cfg.d_model)  # a stay's length in slots
        self.cross = CrossBlock(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lstm = nn.LSTM(cfg.d_model, cfg.lstm_hidden, batch_first=True, bidirectional=True)
        # seq2seq head: embedding + the next window's slot times -> x and y logits per next slot
        self.head_time = TemporalEmbedding(cfg)
        self.head_in = nn.Linear(cfg.dim, cfg.d_model * 4)
        self.head_t = nn.Linear(cfg.d_model, cfg.d_model * 4)
        self.head_out = nn.Linear(cfg.d_model * 4, 2 * cfg.grid)
        self.head_poi = nn.Linear(cfg.d_model * 4, cfg.n_poi)  # the next slots' POI vectors: what KIND of place

    def set_poi(self, feats: torch.Tensor) -> None:
        """Per-cell POI features (grid*grid, n_poi), cell_id order (models.grid), already normalised."""
        self.spatial.poi[1:] = feats.to(self.spatial.poi)

    def bilstm(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, 2H): nn.LSTM's bidirectional recurrence with its own weights, written out so
        the first step of each direction skips the zero state's terms."""
        lstm, T = self.lstm, h.shape[1]
        w_ih = torch.cat([lstm.weight_ih_l0, lstm.weight_ih_l0_reverse])  # (8H, C)
        b = torch.cat([lstm.bias_ih_l0 + lstm.bias_hh_l0, lstm.bias_ih_l0_reverse + lstm.bias_hh_l0_reverse])
        g_f, g_b = F.linear(h, w_ih, b).chunk(2, dim=2)  # (B, T, 4H) each
        fwd = lstm_steps(g_f, lstm.weight_hh_l0, range(T))
        bwd = lstm_steps(g_b, lstm.weight_hh_l0_reverse, range(T - 1, -1, -1))
        return torch.cat([fwd, bwd], dim=2)  # (B, T, 2H)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 5) windows -> (B, 512) embeddings."""
        cx, cy, tod, dow, length, count, n = stays(x)
        s = self.spatial(cx, cy)  # (B, T, C), stays left-aligned
        t = self.temporal(tod, dow) + self.length(length)  # (B, T, C)
        out = torch.zeros(x.shape[0], self.cfg.dim, device=x.device)
        for k in torch.unique(n).tolist():
            if k == 0:
                continue  # no observation: the zero vector
            rows = torch.nonzero(n == k).squeeze(1)
            h = self.cross(s[rows, :k], t[rows, :k])  # (b, k, C)
            for block in self.blocks:
                h = block(h)
            o = self.bilstm(self.ln_f(h))  # (b, k, 2H)
            w = count[rows, :k].to(o.dtype).unsqueeze(-1)  # (b, k, 1)
            out = out.index_copy(0, rows, (o * w).sum(dim=1) / w.sum(dim=1))
        return out

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
        # POI vectors of the next cells (z-scored): an office and a school a few cells apart look alike
        # to the x/y loss but not to this one, and "what kind of place" is what profiling needs.
        poi = self.spatial.poi[(tgt[:, 1]) * self.cfg.grid + tgt[:, 0] + 1]  # (N, n_poi)
        loss = loss + F.mse_loss(self.head_poi(h[seen]), poi)
        return pred, loss
