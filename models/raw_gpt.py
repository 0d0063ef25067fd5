"""The RAW-style GPT ("Regions are Who Walk Them"): a causal transformer over a user's observed cells.

Tokens are dense cell ids 0..n_cells-1 (`models.grid.cell_id`) plus PAD; each token also carries the
time of its observation (slot of day, weekday). Observations are sparse, so the model never steps
slot by slot: position i's hidden state is combined with a *query* (slot of day, weekday, and gap in
slots of the time to predict) and a head gives the distribution of the cell at that time. Training
queries are later observations of the same user, so one head serves every horizon.

The head mixes two distributions with a learned gate g: a generator, a two-level softmax over
coarse blocks (coarse x coarse cells), p(cell) = p(block) * p(cell | block), which touches
n_blocks + cells-per-block outputs per position instead of all 40,000; and a pointer (copy)
distribution, attention from the query over the user's earlier tokens, since people mostly return
to cells they have been seen in. The mean of the final hidden states over a user's tokens is the
user embedding.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.exceptions import ModelsError
from models.raw_gpt_config import KIND, RawGPTConfig  # noqa: F401  (re-exported)
from models.slots import SLOTS_PER_DAY

def split_cell(cfg: RawGPTConfig, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense cell id -> (coarse block, index inside the block)."""
    x0, y0 = cell % cfg.grid_size, cell // cfg.grid_size
    blocks_per_row = cfg.grid_size // cfg.coarse
    block = (y0 // cfg.coarse) * blocks_per_row + x0 // cfg.coarse
    inner = (y0 % cfg.coarse) * cfg.coarse + x0 % cfg.coarse
    return block, inner


def join_cell(cfg: RawGPTConfig, block: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """Inverse of `split_cell`."""
    blocks_per_row = cfg.grid_size // cfg.coarse
    x0 = (block % blocks_per_row) * cfg.coarse + inner % cfg.coarse
    y0 = (block // blocks_per_row) * cfg.coarse + inner // cfg.coarse
    return y0 * cfg.grid_size + x0


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: RawGPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))  # (B, H, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: RawGPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: RawGPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TimeEmbedding(nn.Module):
    """Slot of day + weekday (+ optionally a clipped gap in slots) -> one vector."""

    def __init__(self, cfg: RawGPTConfig, with_gap: bool):
        super().__init__()
        self.tod = nn.Embedding(SLOTS_PER_DAY, cfg.n_embd)
        self.wd = nn.Embedding(7, cfg.n_embd)
        self.gap = nn.Embedding(cfg.max_gap + 1, cfg.n_embd) if with_gap else None
        self.max_gap = cfg.max_gap

    def forward(self, when: torch.Tensor) -> torch.Tensor:
        # when: (..., 2) = (slot of day, weekday) or (..., 3) with the gap in slots last
        e = self.tod(when[..., 0]) + self.wd(when[..., 1])
        if self.gap is not None:
            e = e + self.gap(when[..., 2].clamp(0, self.max_gap))
        return e


class RawGPT(nn.Module):
    def __init__(self, cfg: RawGPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.n_cells + 1, cfg.n_embd, padding_idx=cfg.pad)
        # block and in-block parts share strength between cells, so copying a cell is quick to learn
        self.tok_block = nn.Embedding(cfg.n_blocks + 1, cfg.n_embd)
        self.tok_inner = nn.Embedding(cfg.per_block + 1, cfg.n_embd)
        self.pos = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.time = TimeEmbedding(cfg, with_gap=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.query = TimeEmbedding(cfg, with_gap=True)
        self.q_mlp = MLP(cfg)
        self.q_ln = nn.LayerNorm(cfg.n_embd)
        self.head_block = nn.Linear(cfg.n_embd, cfg.n_blocks)
        self.inner_cond = nn.Embedding(cfg.n_blocks, cfg.n_embd)
        self.inner_in = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.head_inner = nn.Linear(cfg.n_embd, cfg.per_block)
        self.ptr_q = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.ptr_k = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.ptr_recency = nn.Embedding(cfg.block_size, 1)  # bias by how many tokens back a cell was seen
        self.gate = nn.Linear(cfg.n_embd, 1)
        self.apply(self._init)
        with torch.no_grad():
            # start out trusting the copy of the latest token: most next cells are cells just seen
            self.gate.bias.fill_(-1.0)
            self.ptr_recency.weight.zero_()
            self.ptr_recency.weight[0] = 2.0

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def encode(self, idx: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """idx (B, T) cell ids or PAD, times (B, T, 2) -> final hidden states (B, T, C)."""
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ModelsError(f"sequence of {T} tokens exceeds RawGPTConfig.block_size={self.cfg.block_size}")
        block, inner = split_cell(self.cfg, idx)
        pad = idx == self.cfg.pad
        block = torch.where(pad, self.cfg.n_blocks, block)
        inner = torch.where(pad, self.cfg.per_block, inner)
        pos = torch.arange(T, device=idx.device)
        x = self.tok(idx) + self.tok_block(block) + self.tok_inner(inner) + self.pos(pos)[None] + self.time(times)  # (B, T, C)
        x = self.drop(x)
        for blk in self.blocks:
            x = blk(x)
        return self.ln_f(x)

    def condition(self, h: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., C) + queries (..., 3) = (slot of day, weekday, gap) -> head input (..., C)."""
        z = h + self.query(query)
        return self.q_ln(z + self.q_mlp(z))

    def _inner_logits(self, z: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        """Logits over the cells of `block`, (..., per_block)."""
        return self.head_inner(F.gelu(self.inner_in(z) + self.inner_cond(block)))

    def pointer(self, z: torch.Tensor, h: torch.Tensor, visible: torch.Tensor, back: torch.Tensor) -> torch.Tensor:
        """Copy attention of head inputs z (B, Q, C) over hidden states h (B, T, C) where visible (B, Q, T);
        back (B, Q, T) counts how many tokens before the query's position each token lies."""
        att = self.ptr_q(z) @ self.ptr_k(h).transpose(1, 2) / self.cfg.n_embd**0.5  # (B, Q, T)
        att = att + self.ptr_recency(back.clamp(0, self.cfg.block_size - 1))[..., 0]
        return F.softmax(att.masked_fill(~visible, float("-inf")), dim=-1)

    def _gen_logprob(self, z: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Generator log-probability of `cell` (...,) under head inputs z (..., C)."""
        block, inner = split_cell(self.cfg, cell)
        lp_block = F.log_softmax(self.head_block(z), dim=-1).gather(-1, block[..., None])[..., 0]
        lp_inner = F.log_softmax(self._inner_logits(z, block), dim=-1).gather(-1, inner[..., None])[..., 0]
        return lp_block + lp_inner

    def _mix(self, z, lp_gen, p_copy):
        """log(g * p_gen + (1 - g) * p_copy) with the gate g read from z."""
        g = self.gate(z)[..., 0]
        return torch.logaddexp(F.logsigmoid(g) + lp_gen, F.logsigmoid(-g) + p_copy.clamp_min(1e-12).log())

    def forward(self, idx, times, query, target=None):
        """-> (generator block logits (B, T, n_blocks), mean NLL of the target cells or None).

        Position i queries the time given by query[:, i] from the tokens up to i; target (B, T) is the
        cell at that time, or -1 where there is nothing to score.
        """
        h = self.encode(idx, times)  # (B, T, C)
        z = self.condition(h, query)  # (B, T, C)
        logits = self.head_block(z)  # (B, T, n_blocks)
        if target is None:
            return logits, None
        T = idx.shape[1]
        ar = torch.arange(T, device=idx.device)
        back = ar[:, None] - ar[None, :]  # (T, T)
        visible = (back >= 0)[None] & (idx != self.cfg.pad)[:, None, :]  # (B, T, T)
        a = self.pointer(z, h, visible, back.expand(idx.shape[0], T, T))  # (B, T, T)
        p_copy = (a * (idx[:, None, :] == target[:, :, None])).sum(-1)  # (B, T)
        valid = target >= 0
        lp = self._mix(z[valid], self._gen_logprob(z[valid], target[valid]), p_copy[valid])
        return logits, -lp.mean()

    @torch.no_grad()
    def predict(self, idx, times, rows, pos, query, k: int = 5, beam: int = 8, pool: int = 32):
        """Ranked cells for queries made from windows: query q reads window rows[q] up to position pos[q].

        idx/times (W, T) windows, rows/pos (Q,), query (Q, 3) -> (cells (Q, k), log-probs (Q, k)).
        Candidates are the window's cells (copy mass plus their generator mass) and the generator's
        `pool` best cells over its `beam` best blocks; a window cell outside that pool counts its
        copy mass only (its generator mass is below the pool's smallest).
        """
        h = self.encode(idx, times)  # (W, T, C)
        z = self.condition(h[rows, pos], query)  # (Q, C)
        ctx = idx[rows]  # (Q, T)
        T = idx.shape[1]
        back = pos[:, None] - torch.arange(T, device=idx.device)[None, :]  # (Q, T)
        visible = (back >= 0) & (ctx != self.cfg.pad)  # (Q, T)
        a = self.pointer(z[:, None, :], h[rows], visible[:, None, :], back[:, None, :])[:, 0]  # (Q, T)
        same = ctx[:, :, None] == ctx[:, None, :]  # (Q, T, T)
        p_copy = (a[:, None, :] * same).sum(-1)  # (Q, T): copy mass of each position's cell
        gen_cells, gen_lp = self.topk(z, max(k, pool), beam)  # (Q, P)
        in_pool = ctx[:, :, None] == gen_cells[:, None, :]  # (Q, T, P)
        p_gen = (in_pool * gen_lp.exp()[:, None, :]).sum(-1)  # (Q, T)
        g = self.gate(z)  # (Q, 1)
        lp_ctx = (torch.sigmoid(g) * p_gen + torch.sigmoid(-g) * p_copy).clamp_min(1e-30).log()
        earlier = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril(-1)
        first = ~(same & earlier[None]).any(-1)  # first position of each distinct cell
        lp_ctx = lp_ctx.masked_fill(~(visible & first), float("-inf"))
        in_ctx = (in_pool & visible[:, :, None]).any(1)  # (Q, P): already scored above
        lp_gen = (F.logsigmoid(g) + gen_lp).masked_fill(in_ctx, float("-inf"))
        cand = torch.cat([torch.where(visible, ctx, 0), gen_cells], dim=1)
        lp, sel = torch.cat([lp_ctx, lp_gen], dim=1).topk(k, dim=-1)
        return cand.gather(1, sel), lp

    @torch.no_grad()
    def topk(self, z: torch.Tensor, k: int = 5, beam: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """Head inputs z (N, C) -> the generator's k most likely cells (N, k) and their log-probabilities.

        Searches the `beam` most likely blocks; exact whenever the k-th log-prob found is at least the
        log-prob of the best block left out (a cell is never likelier than its block).
        """
        lp_block = F.log_softmax(self.head_block(z), dim=-1)  # (N, n_blocks)
        beam = min(beam, self.cfg.n_blocks)
        top_lp, top_b = lp_block.topk(beam, dim=-1)  # (N, beam)
        lp_inner = F.log_softmax(self._inner_logits(z[:, None, :], top_b), dim=-1)  # (N, beam, per_block)
        joint = (top_lp[..., None] + lp_inner).flatten(1)  # (N, beam * per_block)
        lp, flat = joint.topk(k, dim=-1)  # (N, k)
        cells = join_cell(self.cfg, top_b.gather(1, flat // self.cfg.per_block), flat % self.cfg.per_block)
        return cells, lp

    @torch.no_grad()
    def embed(self, idx: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """User embedding (B, C): the mean of the final hidden states over the non-PAD tokens."""
        h = self.encode(idx, times)  # (B, T, C)
        keep = (idx != self.cfg.pad).unsqueeze(-1).to(h.dtype)  # (B, T, 1)
        return (h * keep).sum(1) / keep.sum(1).clamp_min(1.0)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

