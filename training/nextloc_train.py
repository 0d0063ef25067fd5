"""Training the RAW GPT on the training users' observation sequences (`train_raw`), with early stopping."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobstream.paths import data_dir, runs_dir
from models.raw_gpt_config import KIND, RawGPTConfig
from training.exceptions import TrainingError
from training.nextloc_data import Batch, Sequences, load, sample_batch, split_users, split_validation, tiling_starts, windows

log = logging.getLogger(__name__)


def default_data() -> Path:
    return data_dir() / "synth" / "cityA_challengedata.csv"


@dataclass(frozen=True)
class RawTrainSettings:
    data: Path = field(default_factory=default_data)
    out: Path = field(default_factory=lambda: runs_dir() / "encoder" / "raw_gpt.pt")
    seed: int = 0
    epochs: int = 4
    steps_per_epoch: int = 120
    batch_size: int = 48
    lr: float = 3e-3
    weight_decay: float = 0.01
    max_ahead: int = 24  # targets are the k-th next observation, k log-uniform in 1..max_ahead
    train_uid_below: int = 4000
    val_fraction: float = 0.1
    patience: int = 2  # epochs without a better validation loss before stopping
    max_minutes: float = 8.0  # wall-clock guard: stop after the epoch that passes it
    device: str = "auto"  # auto = CUDA when present, else CPU
    # torch CPU threads; 0 = torch's default. 1 by default: on a shared 2-core machine two OpenMP
    # threads that get descheduled spin on each other (measured 8x slower wall time under load)
    threads: int = 1
    model: RawGPTConfig = field(default_factory=RawGPTConfig)
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size", "max_ahead"):
            if getattr(self, name) < 1:
                raise TrainingError(f"RawTrainSettings.{name}={getattr(self, name)} must be at least 1")
        if not 0.0 < self.val_fraction < 1.0:
            raise TrainingError(f"RawTrainSettings.val_fraction={self.val_fraction} must lie in (0, 1)")


def pick_device(name: str):
    import torch

    from models import checkpoint

    if name == "auto":
        return checkpoint.device()
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device={name!r} was asked for but CUDA is not available (MOBSTREAM_DEVICE)")
    return torch.device(name)


def to_tensors(batch: Batch, device) -> tuple:
    import torch

    return tuple(torch.from_numpy(a).to(device) for a in (batch.idx, batch.times, batch.query, batch.target))


def validation_loss(model, seqs: Sequences, device, batch_size: int) -> float:
    """Mean NLL of the next observation over fixed windows tiling the validation users."""
    import torch

    cfg = model.cfg
    starts = tiling_starts(seqs, cfg.block_size)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(starts), batch_size):
            s = starts[i : i + batch_size]
            ahead = np.ones((len(s), cfg.block_size), dtype=np.int64)
            b = windows(seqs, s, cfg.block_size, ahead, cfg.pad)
            n = int((b.target >= 0).sum())
            if n:
                _, loss = model(*to_tensors(b, device))
                total, count = total + float(loss) * n, count + n
    model.train()
    return total / max(count, 1)


def train_raw(settings: RawTrainSettings) -> dict:
    """Train, keep the weights of the best validation epoch, save a "raw_gpt" checkpoint; returns a summary."""
    import torch
    from tqdm import tqdm

    from models import checkpoint
    from models.raw_gpt import RawGPT, n_params

    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    device = pick_device(settings.device)
    seqs = load(settings.data)
    train_all, _ = split_users(seqs, settings.train_uid_below)
    if train_all.n_users < 2:
        raise TrainingError(
            f"{settings.data}: {train_all.n_users} users with uid < train_uid_below={settings.train_uid_below}; need at least 2"
        )
    fit, val = split_validation(train_all, settings.val_fraction, settings.seed)
    cfg = settings.model
    model = RawGPT(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    total_steps = settings.epochs * settings.steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=total_steps, pct_start=0.1)
    log.info(
        "raw_gpt: %d params, %d fit users (%d tokens), %d validation users, device %s",
        n_params(model), fit.n_users, len(fit.cell), val.n_users, device,
    )
    best, best_state, stale, history = float("inf"), None, 0, []
    t0, cpu0 = time.perf_counter(), time.process_time()
    for epoch in range(settings.epochs):
        bar = tqdm(range(settings.steps_per_epoch), desc=f"epoch {epoch + 1}/{settings.epochs}", disable=not settings.progress)
        train_sum = 0.0
        for _ in bar:
            b = sample_batch(fit, rng, settings.batch_size, cfg.block_size, settings.max_ahead, cfg.pad)
            _, loss = model(*to_tensors(b, device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            train_sum += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        val_loss = validation_loss(model, val, device, 4 * settings.batch_size)
        elapsed = time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "train_loss": train_sum / settings.steps_per_epoch, "val_loss": val_loss, "seconds": elapsed})
        log.info("epoch %d: train %.4f, validation %.4f, %.0f s", epoch + 1, history[-1]["train_loss"], val_loss, elapsed)
        if val_loss < best:
            best, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        if stale >= settings.patience or elapsed > 60 * settings.max_minutes:
            break
    model.load_state_dict(best_state)
    train_seconds = time.perf_counter() - t0
    extra = {
        "train_seconds": train_seconds,
        # CPU time of this process (all its threads): comparable across runs on a busy shared machine
        "train_cpu_seconds": time.process_time() - cpu0,
        "history": history,
        "data": str(settings.data),
        "train_uid_below": settings.train_uid_below,
        "seed": settings.seed,
        "device": str(device),
    }
    version = checkpoint.save(settings.out, KIND, cfg, model, extra=extra)
    log.info("raw_gpt: saved %s (%s) after %.0f s", settings.out, version, train_seconds)
    return {"checkpoint": str(settings.out), "version": version, "best_val_loss": best, **extra}


def load_model(path: str | Path, device="cpu"):
    """Rebuild a RAW GPT from its checkpoint; returns (model in eval mode, checkpoint payload)."""
    from models import checkpoint
    from models.raw_gpt import RawGPT

    payload = checkpoint.load(path, KIND)
    model = RawGPT(RawGPTConfig(**payload["model_args"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload
