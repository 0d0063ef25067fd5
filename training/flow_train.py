"""`mobstream train flow`: fits FlowLSTM and the linear baseline (slots 1..H ahead) on a temporal split of the flow tensor.

Time is never shuffled across the split: the last `test_frac` of slots is held out for
`evaluate flow`; inside the training period the last `val_frac` of slots is the validation tail
that drives early stopping. Examples are (cell, target slot) pairs drawn uniformly, each epoch
afresh, from the scored cells (occupied at least once in the training period) and the training
targets, so the loss weighs cells and hours exactly as the evaluation does. A pair's target is the
H slots from its target slot on, all inside the pair's period.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.features import N_LEVELS, FeatureStats, fit_channel_stats, fit_poi_stats, model_input, poi_features, target_offset
from models.slots import WINDOW_SLOTS
from training.exceptions import TrainingError
from mobstream.paths import runs_dir
from mobstream.settings import opt
from training.flow_build import CACHE_OPT, CITY_OPT, DATA_OPT, POI_OPT, REBUILD_OPT, FlowBuildSettings, FlowData, build_settings, load_or_build

log = logging.getLogger(__name__)
OUT_OPT = opt(runs_dir() / "flow", "flow_dir", "Folder of the flow checkpoints, metrics and reports.")


@dataclass(frozen=True)
class FlowTrainSettings:
    build: FlowBuildSettings
    out_dir: Path = Path("runs/flow")
    test_frac: float = 0.2
    val_frac: float = 0.15
    epochs: int = 40
    patience: int = 4
    samples_per_epoch: int = 240_000
    val_samples: int = 30_000
    batch: int = 1024
    lr: float = 3e-3
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    loss: str = "poisson"
    target: str = "level"
    horizons: int = 4
    cell_levels: bool = True


@dataclass(frozen=True)
class Split:
    """Slot offsets (slot - slot0): train targets [WINDOW_SLOTS, val_start), validation [val_start, test_start), test [test_start, n_slots)."""

    val_start: int
    test_start: int
    n_slots: int

    @classmethod
    def make(cls, n_slots: int, test_frac: float, val_frac: float) -> "Split":
        test_start = n_slots - int(round(test_frac * n_slots))
        val_start = test_start - int(round(val_frac * test_start))
        if not (WINDOW_SLOTS < val_start < test_start < n_slots):
            raise TrainingError(
                f"{n_slots} slots are too few to split with test_frac={test_frac} and val_frac={val_frac} "
                f"(need a {WINDOW_SLOTS}-slot window before each of train, validation and test)"
            )
        return cls(val_start, test_start, n_slots)


def scored_cells(data: FlowData, split: Split) -> np.ndarray:
    """Indices (into data.cells) of the cells occupied at least once in the training period."""
    return np.flatnonzero(data.counts[: split.test_start, :, 0].max(axis=0) > 0)


def cell_table(data: FlowData, split: Split, levels: bool) -> np.ndarray:
    """(G*G, 85 [+ 3]) the models' static input per grid cell: POI counts, then (with `levels`) the cell's mean
    counts over the training period (0 for a cell never visited): its usual level, which 8 slots cannot show."""
    if not levels:
        return data.poi
    mean = np.zeros((len(data.poi), N_LEVELS), dtype=np.float32)
    for i in range(0, len(data.cells), 8192):  # float64 sums in blocks: a float32 copy of the tensor is GBs
        mean[data.cells[i : i + 8192]] = data.counts[: split.test_start, i : i + 8192].mean(axis=0, dtype=np.float64)
    return np.concatenate([data.poi, mean], axis=1)


def fit_stats(data: FlowData, split: Split, cells: np.ndarray, table: np.ndarray) -> FeatureStats:
    mean, std, scale = fit_channel_stats(data.counts[: split.test_start][:, cells])
    pmean, pstd = fit_poi_stats(table)
    return FeatureStats(tuple(mean), tuple(std), tuple(scale), tuple(pmean), tuple(pstd))


def windows(counts: np.ndarray, cell: np.ndarray, target: np.ndarray, horizons: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(B,) cell indices and first target slot offsets -> input windows (B, 8, 3) and target counts (B, H, 3)."""
    slots = target[:, None] + np.arange(-WINDOW_SLOTS, 0)  # (B, 8) the slots before the target
    ahead = target[:, None] + np.arange(horizons)  # (B, H) the target slots
    return counts[slots, cell[:, None]], counts[ahead, cell[:, None]]


class Batches:
    """Builds model tensors for (cell, target) pairs with `models.features.model_input`, as online."""

    def __init__(self, data: FlowData, stats: FeatureStats, target: str = "level", horizons: int = 1, table: np.ndarray | None = None):
        self.data, self.stats, self.target, self.horizons = data, stats, target, horizons
        self.poi = poi_features((data.poi if table is None else table)[data.cells], stats)  # (N, S) per active cell
        self.scale = np.float32(stats.target_scale)

    def tensors(self, cell: np.ndarray, target: np.ndarray, device):
        import torch

        win, y = windows(self.data.counts, cell, target, self.horizons)
        seq, static = model_input(win, self.data.slot0 + target - 1, self.poi[cell], self.stats)
        to = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)  # noqa: E731
        return to(seq), to(static), to((y - target_offset(win[:, -1], self.target)[:, None]) / self.scale)  # y (B, H, 3)


def sample_pairs(rng: np.random.Generator, cells: np.ndarray, lo: int, hi: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n (cell, target) pairs drawn uniformly from cells x [lo, hi); all of them when there are fewer."""
    total = len(cells) * (hi - lo)
    flat = np.arange(total) if total <= n else rng.integers(0, total, n)
    return cells[flat % len(cells)], lo + flat // len(cells)


def _evaluate_loss(model, batches: Batches, pairs, size: int, device) -> float:
    import torch

    model.eval()
    total, n = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(pairs[0]), size):
            seq, static, y = batches.tensors(pairs[0][i : i + size], pairs[1][i : i + size], device)
            total += float(model(seq, static, y)[1]) * len(y)
            n += len(y)
    return total / max(n, 1)


def fit(model, batches: Batches, cells: np.ndarray, split: Split, s: FlowTrainSettings, device, name: str) -> dict:
    """Adam with early stopping on the validation tail; the best epoch's weights are kept."""
    import torch
    from tqdm import tqdm

    rng = np.random.default_rng(s.seed)
    torch.manual_seed(s.seed)
    last = s.horizons - 1  # a pair's H target slots stay inside its period
    val = sample_pairs(rng, cells, split.val_start, split.test_start - last, s.val_samples)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    best, best_state, history, bad = float("inf"), None, [], 0
    t0 = time.perf_counter()
    for epoch in range(1, s.epochs + 1):
        model.train()
        cell, target = sample_pairs(rng, cells, WINDOW_SLOTS, split.val_start - last, s.samples_per_epoch)
        bar = tqdm(range(0, len(cell), s.batch), desc=f"{name} epoch {epoch}", leave=False, unit="batch")
        train_loss = 0.0
        for i in bar:
            seq, static, y = batches.tensors(cell[i : i + s.batch], target[i : i + s.batch], device)
            _, loss = model(seq, static, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            train_loss += float(loss.detach()) * len(y)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        val_loss = _evaluate_loss(model, batches, val, 8192, device)
        history.append({"epoch": epoch, "train_loss": train_loss / len(cell), "val_loss": val_loss})
        log.info("%s epoch %d: train %.5f val %.5f", name, epoch, history[-1]["train_loss"], val_loss)
        if val_loss < best - 1e-6:
            best, bad = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= s.patience:
                break
    model.load_state_dict(best_state)
    return {"best_val_loss": best, "epochs": len(history), "seconds": round(time.perf_counter() - t0, 1), "history": history}


def checkpoint_extra(data: FlowData, table: np.ndarray, stats: FeatureStats, split: Split, s: FlowTrainSettings) -> dict:
    """What the online side and the evaluator need besides the weights (the static table's non-empty rows)."""
    import torch

    has_poi = np.flatnonzero(table.any(axis=1))
    return {
        "feature_stats": stats.to_dict(),
        "grid_size": int(data.meta.get("grid_size", 200)),
        "poi_cells": torch.from_numpy(has_poi.astype(np.int64)),
        "poi_counts": torch.from_numpy(table[has_poi].astype(np.float32)),
        "data_fingerprint": data.meta.get("fingerprint"),
        "poi_fingerprint": data.meta.get("poi_fingerprint"),
        "source": data.meta.get("source"),
        "city": data.meta.get("city"),
        "slot0": int(data.slot0),
        "split": asdict(split),
        "seed": s.seed,
    }


def linear_loss(loss: str) -> str:
    """The linear baseline's loss: least squares (identity link) for the mean-optimal losses. A log-linear
    Poisson model overshoots on busy cells (docs/flow.md: dense city h=1 RMSE 1.271 against 1.068)."""
    return "mse" if loss == "poisson" else loss


def train(s: FlowTrainSettings) -> dict:
    """Train both flow models, write their checkpoints and a metrics JSON; returns the metrics."""
    import torch

    from models import checkpoint
    from models.flow_linear import FlowLinear, FlowLinearConfig
    from models.features import TARGETS
    from models.flow_lstm import LOSSES, FlowLSTM, FlowLSTMConfig, check_config

    if s.threads:
        torch.set_num_threads(s.threads)
    device = checkpoint.device() if s.device == "auto" else torch.device(s.device)
    data = load_or_build(s.build)
    split = Split.make(data.counts.shape[0], s.test_frac, s.val_frac)
    cells = scored_cells(data, split)
    if not len(cells):
        raise TrainingError(f"{s.build.data}: no cell is occupied in the training period")
    table = cell_table(data, split, s.cell_levels)
    stats = fit_stats(data, split, cells, table)
    batches = Batches(data, stats, s.target, s.horizons, table)
    extra = checkpoint_extra(data, table, stats, split, s)
    n_static = table.shape[1]
    metrics = {"data": data.meta, "split": asdict(split), "scored_cells": int(len(cells)), "device": str(device), "models": {}}
    if s.loss not in LOSSES:
        raise TrainingError(f"loss {s.loss!r} (setting --loss / MOBSTREAM_FLOW_LOSS) must be one of {', '.join(LOSSES)}")
    if s.target not in TARGETS:
        raise TrainingError(f"target {s.target!r} (setting --target / MOBSTREAM_FLOW_TARGET) must be one of {', '.join(TARGETS)}")
    try:
        check_config(s.loss, s.target, s.horizons)
    except ValueError as exc:
        raise TrainingError(f"settings --loss {s.loss} --target {s.target} --horizons {s.horizons}: {exc}") from exc
    for kind, build in (
        ("flow_lstm", lambda: FlowLSTM(FlowLSTMConfig(n_static=n_static, loss=s.loss, target=s.target, horizons=s.horizons))),
        ("flow_linear", lambda: FlowLinear(FlowLinearConfig(n_static=n_static, loss=linear_loss(s.loss), target=s.target, horizons=s.horizons))),
    ):
        torch.manual_seed(s.seed)  # each model initialised under the seed
        model = build().to(device)
        result = fit(model, batches, cells, split, s, device, kind)
        path = s.out_dir / f"{kind}.pt"
        result["version"] = checkpoint.save(path, kind, model.config, model, extra={**extra, "training": {k: result[k] for k in ("best_val_loss", "epochs", "seconds")}})
        result["checkpoint"] = str(path)
        metrics["models"][kind] = result
        log.info("%s: %d epochs in %.1fs, best validation loss %.5f -> %s", kind, result["epochs"], result["seconds"], result["best_val_loss"], path)
    s.out_dir.mkdir(parents=True, exist_ok=True)
    (s.out_dir / "train_metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def command(
    data: Path = DATA_OPT,
    poi: Path = POI_OPT,
    city: str = CITY_OPT,
    cache_dir: Path = CACHE_OPT,
    rebuild: bool = REBUILD_OPT,
    out_dir: Path = OUT_OPT,
    epochs: int = opt(40, "flow_epochs", "Most epochs; training stops earlier when validation loss stalls."),
    patience: int = opt(4, "flow_patience", "Epochs without validation improvement before stopping."),
    samples: int = opt(240_000, "flow_samples", "(cell, slot) training examples drawn per epoch."),
    batch: int = opt(1024, "flow_batch", "Batch size."),
    lr: float = opt(3e-3, "flow_lr", "Adam learning rate."),
    test_frac: float = opt(0.2, "flow_test_frac", "Last fraction of slots held out for evaluation."),
    val_frac: float = opt(0.15, "flow_val_frac", "Last fraction of the training slots used for early stopping."),
    seed: int = opt(0, "seed", "Random seed (sampling and initialisation)."),
    device: str = opt("auto", "device", "torch device: auto (CUDA when present, else CPU), cpu, cuda."),
    threads: int = opt(0, "torch_threads", "torch CPU threads (0: torch's default)."),
    loss: str = opt("poisson", "flow_loss", "Training loss: poisson (NLL, expected counts), mse (expected counts), l1 (the median model: 0 on sparse cells), huber."),
    target: str = opt("level", "flow_target", "What the models predict: level (the counts) or change (from the window's last slot)."),
    horizons: int = opt(4, "flow_horizons", "Slots ahead forecast at every slot close (1..H, 30 min each)."),
    cell_levels: bool = opt(True, "flow_cell_levels", "Give the models each cell's mean counts over the training period beside its POIs."),
) -> None:
    """Train FlowLSTM and the linear baseline; write checkpoints and train_metrics.json."""
    import typer

    s = FlowTrainSettings(
        build_settings(data, poi, city, cache_dir, rebuild), Path(out_dir), test_frac=test_frac, val_frac=val_frac, epochs=epochs,
        patience=patience, samples_per_epoch=samples, batch=batch, lr=lr, seed=seed, device=device, threads=threads, loss=loss,
        target=target, horizons=horizons, cell_levels=cell_levels,
    )
    m = train(s)
    for kind, r in m["models"].items():
        typer.echo(f"{kind}: {r['epochs']} epochs, {r['seconds']} s, best validation loss {r['best_val_loss']:.5f} -> {r['checkpoint']} ({r['version']})")
    typer.echo(f"metrics: {s.out_dir / 'train_metrics.json'}")
