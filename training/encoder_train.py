"""Training of the trajectory encoder (seq2seq objective): settings, the loop with early stopping, the checkpoint."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import typer

from mobstream.paths import data_dir, runs_dir
from mobstream.settings import opt
from training.encoder_data import Pairs, load_observations, make_pairs, poi_path_for, split_by_user, split_validation
from training.exceptions import TrainingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderTrainSettings:
    data: Path = field(default_factory=lambda: data_dir() / "synth" / "cityA_challengedata.csv")
    out: Path = field(default_factory=lambda: runs_dir() / "encoder" / "encoder.pt")
    poi: Path | None = None  # default: POIdata_city<X>.csv beside the data when it exists (else no POI vectors)
    seed: int = 0
    epochs: int = 8
    per_user: int = 8  # windows sampled per training user per epoch (fresh each epoch)
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.01
    train_uid_below: int = 4000
    val_fraction: float = 0.1
    patience: int = 2  # epochs without a better validation loss before stopping
    max_minutes: float = 9.0  # wall-clock budget: no epoch starts that would likely end past it
    device: str = "auto"  # auto = CUDA when present, else CPU
    threads: int = 1  # torch CPU threads; 1 is fastest on a busy 2-core machine, 0 = torch's default
    noise_std: float = 0.1
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "per_user", "batch_size"):
            if getattr(self, name) < 1:
                raise TrainingError(f"setting {name}={getattr(self, name)} must be at least 1")
        if not 0.0 < self.val_fraction < 1.0:
            raise TrainingError(f"setting val_fraction={self.val_fraction} must lie in (0, 1)")
        if self.noise_std < 0:
            raise TrainingError(f"setting noise_std={self.noise_std} must not be negative")


def pick_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"setting device={name!r}: CUDA is not available on this machine")
    return torch.device(name)


def poi_features(path: Path | None):
    """(grid*grid, 85) float32 tensor: log1p POI counts z-scored over the grid (models.features, as the flow
    model reads them); zeros without a file."""
    import torch

    from models.features import fit_poi_stats
    from training.flow_build import read_poi

    table = read_poi(path)
    mean, std = fit_poi_stats(table)
    return torch.from_numpy(((np.log1p(table) - mean) / std).astype(np.float32))


def batches(p: Pairs, batch_size: int, device, rng: np.random.Generator | None = None):
    import torch

    idx = rng.permutation(len(p)) if rng is not None else np.arange(len(p))
    for i in range(0, len(p), batch_size):
        j = idx[i : i + batch_size]
        yield torch.from_numpy(p.inp[j]).to(device), torch.from_numpy(p.target[j]).to(device)


def mean_loss(model, p: Pairs, device, batch_size: int = 2048) -> float:
    import torch

    model.eval()
    total, n = 0.0, 0
    with torch.inference_mode():
        for x, t in batches(p, batch_size, device):
            _, loss = model(x, t)
            total += float(loss) * len(x)
            n += len(x)
    return total / max(n, 1)


def train_encoder(st: EncoderTrainSettings) -> dict:
    """Train on users uid < train_uid_below (a tenth of them for early stopping); returns a summary."""
    import torch
    from tqdm import tqdm

    from models import checkpoint
    from models.encoder import KIND, EncoderConfig, TrajectoryEncoder

    t0 = time.perf_counter()
    if st.threads > 0:
        torch.set_num_threads(st.threads)
    torch.manual_seed(st.seed)
    rng = np.random.default_rng(st.seed)
    device = pick_device(st.device)
    obs = load_observations(st.data)
    train, _ = split_by_user(obs, st.train_uid_below)
    if len(train) == 0:
        raise TrainingError(f"setting train_uid_below={st.train_uid_below}: no user of {st.data} lies below it")
    fit, val = split_validation(train, st.val_fraction, st.seed)
    val_pairs = make_pairs(val, np.random.default_rng(st.seed + 1), per_user=st.per_user)
    cfg = EncoderConfig(noise_std=st.noise_std)
    model = TrajectoryEncoder(cfg)
    poi = st.poi if st.poi is not None else poi_path_for(st.data)
    if st.poi is not None and not st.poi.is_file():
        raise TrainingError(f"setting poi={st.poi}: no such POI file")
    poi = poi if poi.is_file() else None
    model.set_poi(poi_features(poi))
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=st.lr, weight_decay=st.weight_decay)
    best, best_state, bad_epochs, history = float("inf"), None, 0, []
    for epoch in range(st.epochs):
        pairs = make_pairs(fit, rng, per_user=st.per_user)
        model.train()
        bar = tqdm(batches(pairs, st.batch_size, device, rng), total=-(-len(pairs) // st.batch_size),
                   desc=f"encoder epoch {epoch + 1}/{st.epochs}", disable=not st.progress, leave=False)
        for x, t in bar:
            _, loss = model(x, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        v = mean_loss(model, val_pairs, device)
        history.append({"epoch": epoch + 1, "val_loss": round(v, 4), "examples": len(pairs), "seconds": round(time.perf_counter() - t0, 1)})
        log.info("encoder epoch %d: validation loss %.4f (%d examples, %.0f s)", epoch + 1, v, len(pairs), time.perf_counter() - t0)
        if v < best - 1e-4:
            best, bad_epochs = v, 0
            best_state = {k: w.detach().clone() for k, w in model.state_dict().items()}
        else:
            bad_epochs += 1
        elapsed = time.perf_counter() - t0
        last_epoch = elapsed - (history[-2]["seconds"] if len(history) > 1 else 0.0)
        # Stop when another epoch like the last one would overrun the wall-clock budget.
        if bad_epochs >= st.patience or elapsed + last_epoch > st.max_minutes * 60:
            break
    model.load_state_dict(best_state)
    seconds = time.perf_counter() - t0
    extra = {"objective": "seq2seq", "data": str(st.data), "poi": str(poi) if poi else None, "train_uid_below": st.train_uid_below,
             "val_loss": best, "history": history, "train_seconds": seconds, "device": str(device)}
    version = checkpoint.save(st.out, KIND, cfg, model.cpu(), extra=extra)
    return {"checkpoint": str(st.out), "version": version, "val_loss": round(best, 4), "epochs": len(history),
            "train_seconds": round(seconds, 1), "device": str(device)}


def train_command(
    objective: str = opt("seq2seq", "objective", "seq2seq: this encoder (next-window cells); raw: the RAW-style GPT (training.nextloc_train)"),
    data: Path = opt(None, "data", "YJMob-format uid,d,t,x,y file (default: the synthetic city A in the data dir)"),
    out: Path = opt(None, "encoder_out", "checkpoint to write (default: <runs>/encoder/encoder.pt)"),
    poi: Path = opt(None, "poi", "POI file whose per-cell vectors enter the spatial embedding (default: POIdata_city<X>.csv beside the data, if any)"),
    train_uid_below: int = opt(4000, "train_uid_below", "users with uid below this train; the rest are held out for evaluation"),
    epochs: int = opt(8, "encoder_epochs", "most epochs (early stopping may end sooner)"),
    per_user: int = opt(8, "encoder_per_user", "windows sampled per training user per epoch"),
    batch_size: int = opt(256, "encoder_batch_size", "examples per optimiser step"),
    lr: float = opt(3e-3, "encoder_lr", "AdamW learning rate"),
    noise_std: float = opt(0.1, "encoder_noise_std", "std of the Gaussian noise added to the spatial embeddings in training"),
    patience: int = opt(2, "encoder_patience", "epochs without a better validation loss before stopping"),
    max_minutes: float = opt(9.0, "encoder_max_minutes", "wall-clock budget: no epoch starts that would likely end past it"),
    device: str = opt("auto", "device", "auto (CUDA when present, else CPU), cpu, cuda"),
    threads: int = opt(1, "threads", "torch CPU threads (0 = torch's default)"),
    seed: int = opt(0, "seed", "random seed"),
) -> None:
    """Train the hybrid transformer-LSTM trajectory encoder (512-d embeddings of 8-slot windows)."""
    if objective == "raw":
        run_raw(data, out, train_uid_below, device, seed)
        return
    if objective != "seq2seq":
        raise TrainingError(f"setting objective={objective!r}: use seq2seq or raw")
    base = EncoderTrainSettings()
    st = EncoderTrainSettings(
        data=data or base.data, out=out or base.out, poi=poi, train_uid_below=train_uid_below, epochs=epochs, per_user=per_user,
        batch_size=batch_size, lr=lr, noise_std=noise_std, patience=patience, max_minutes=max_minutes,
        device=device, threads=threads, seed=seed,
    )
    typer.echo(json.dumps(train_encoder(st), indent=2))


def run_raw(data: Path | None, out: Path | None, train_uid_below: int, device: str, seed: int) -> None:
    """`--objective raw` belongs to the RAW-style GPT (training.nextloc_train); this only forwards to it."""
    try:
        from training.nextloc_train import RawTrainSettings, train_raw
    except ImportError as exc:
        raise TrainingError("objective raw is provided by training.nextloc_train, which is not available") from exc
    base = RawTrainSettings()
    st = RawTrainSettings(data=data or base.data, out=out or base.out, train_uid_below=train_uid_below, device=device, seed=seed)
    typer.echo(json.dumps(train_raw(st), indent=2, default=str))
