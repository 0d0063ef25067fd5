"""The inference wrapper of the trajectory encoder: windows in, 512-d float32 embeddings out (online and offline).

The stream worker calls `TrajectoryEmbedder.load(path).embed(x, y, mask, end_slot)` once per closed slot
for all active users; offline jobs use `embed_windows` and `embed_users` (a user's whole sequence).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models import checkpoint
from models.encoder import FORMAT, KIND, EncoderConfig, TrajectoryEncoder
from models.exceptions import ModelsError
from models.profiles import profile_windows, profiles
from models.slots import WINDOW_SLOTS
from models.windows import Windows, model_input, sample_per_user


class EmbedderError(ModelsError):
    """Windows handed to the embedder have the wrong shape or type."""


class TrajectoryEmbedder:
    def __init__(self, model: TrajectoryEncoder, version: str, batch_size: int = 4096, device: torch.device | None = None):
        self.device = device or checkpoint.device()
        self.model = model.to(self.device).eval()
        self.version = version
        self.kind = KIND
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: str | Path, batch_size: int = 4096) -> "TrajectoryEmbedder":
        ck = checkpoint.load(path, KIND)
        if ck["model_args"].get("format") != FORMAT:
            raise EmbedderError(f"checkpoint {path} holds an encoder of format {ck['model_args'].get('format', 1)}; this build "
                                f"reads format {FORMAT} (stay tokens, POI vectors): retrain it with `mobstream train encoder`")
        model = TrajectoryEncoder(EncoderConfig(**ck["model_args"]))
        model.load_state_dict(ck["state_dict"])
        return cls(model, ck["version"], batch_size=batch_size)

    @property
    def dim(self) -> int:
        return self.model.cfg.dim

    def embed(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, end_slot) -> np.ndarray:
        """(N, 8) cells and mask (True = observed) of windows ending at `end_slot` -> (N, 512) float32.

        `end_slot` is one int for all windows (the online case) or an (N,) array.
        """
        mask = np.asarray(mask)
        if mask.ndim != 2 or mask.shape[1] != WINDOW_SLOTS or np.shape(x) != mask.shape or np.shape(y) != mask.shape:
            raise EmbedderError(
                f"embed expects x, y, mask of shape (N, {WINDOW_SLOTS}); got x {np.shape(x)}, y {np.shape(y)}, mask {mask.shape}"
            )
        if mask.dtype != bool:
            raise EmbedderError(f"embed expects a bool mask (True = observed), got dtype {mask.dtype}")
        inp = torch.from_numpy(model_input(x, y, mask, end_slot))
        out = np.empty((len(mask), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, len(mask), self.batch_size):
                e = self.model.embed(inp[i : i + self.batch_size].to(self.device))
                out[i : i + len(e)] = e.float().cpu().numpy()
        return out

    def embed_windows(self, w: Windows) -> np.ndarray:
        return self.embed(w.x, w.y, w.mask, w.end_slot)

    def embed_users(self, uid, slot, x, y, max_tiles: int | None = None, seed: int = 0,
                    time_aware: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """A user's whole (multi-day) sequence -> one profile from the embeddings of the 8-slot windows that
        tile it at four phases (`models.profiles.profile_windows`: each observation is embedded four times):
        `profiles` of them. With `max_tiles`, a seeded random sample of at most that many tiles per user
        (cost bound for long sequences).

        Returns (uids (U,) sorted, profiles (U, D) or (U, 12 * D + 972) when `time_aware`).
        """
        w = profile_windows(uid, slot, x, y)
        if max_tiles is not None:
            w = w.take(sample_per_user(w.uid, max_tiles, np.random.default_rng(seed)))
        return profiles(w.uid, w.end_slot, self.embed_windows(w), time_aware)
