"""The RAW GPT's configuration and checkpoint kind: plain data, importable without torch."""

from __future__ import annotations

from dataclasses import dataclass

from models.exceptions import ModelsError

KIND = "raw_gpt"


@dataclass(frozen=True)
class RawGPTConfig:
    block_size: int = 64  # tokens of context
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0
    grid_size: int = 200
    coarse: int = 10  # a coarse block is coarse x coarse cells
    max_gap: int = 96  # query gaps (slots) at or beyond this share one embedding

    def __post_init__(self) -> None:
        if self.grid_size % self.coarse:
            raise ModelsError(f"RawGPTConfig.coarse={self.coarse} must divide grid_size={self.grid_size}")
        if self.n_embd % self.n_head:
            raise ModelsError(f"RawGPTConfig.n_embd={self.n_embd} must be a multiple of n_head={self.n_head}")

    @property
    def n_cells(self) -> int:
        return self.grid_size * self.grid_size

    @property
    def pad(self) -> int:
        return self.n_cells

    @property
    def n_blocks(self) -> int:
        return (self.grid_size // self.coarse) ** 2

    @property
    def per_block(self) -> int:
        return self.coarse * self.coarse
