"""Next-location and next-day trajectory evaluation of the RAW GPT beside persistence and Markov (`evaluate nextloc`).

Only test users (uid >= train_uid_below) are scored. Next location: every observed slot s of the
last `eval_days` days is an anchor; for h = 1..horizons, where the user is also observed at s + h,
each model ranks cells for slot s + h from the history up to s. Trajectory: every observation of the
last `traj_days` days is predicted from the history before them, scored with GEO-BLEU and DTW per
user per day as the HuMob challenge does.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import typer

from mobstream.paths import runs_dir
from mobstream.settings import opt
from models.grid import cell_xy
from models.slots import SLOTS_PER_DAY
from training import metrics
from training.exceptions import TrainingError
from training.nextloc_baselines import Markov, fit_markov, markov_chain, pairs_at
from training.nextloc_data import Sequences, load, query_features, split_users, windows
from training.nextloc_train import default_data

log = logging.getLogger(__name__)
TOPK = 5


@dataclass(frozen=True)
class NextlocEvalSettings:
    data: Path = field(default_factory=default_data)
    checkpoint: Path = field(default_factory=lambda: runs_dir() / "encoder" / "raw_gpt.pt")
    out_dir: Path = field(default_factory=lambda: runs_dir() / "nextloc")
    train_uid_below: int = 4000
    horizons: int = 5
    eval_days: int = 7
    traj_days: int = 1
    max_test_users: int = 0  # 0 = every test user
    beam: int = 8
    batch_size: int = 64  # windows per forward pass
    device: str = "auto"
    threads: int = 1  # torch CPU threads (0 = torch's default); see RawTrainSettings.threads

    def __post_init__(self) -> None:
        for name in ("horizons", "eval_days", "traj_days", "beam", "batch_size"):
            if getattr(self, name) < 1:
                raise TrainingError(f"NextlocEvalSettings.{name}={getattr(self, name)} must be at least 1")


class GPTScorer:
    """The RAW GPT's ranked cells for queries made from chosen rows, each read in a window that gives
    it at least block/2 tokens of context where the user has them."""

    def __init__(self, model, seqs: Sequences, device, batch_size: int, beam: int):
        self.model, self.seqs, self.device, self.batch_size, self.beam = model, seqs, device, batch_size, beam

    def rank(self, rows: np.ndarray, query: np.ndarray, k: int = TOPK) -> np.ndarray:
        import torch

        cfg, seqs = self.model.cfg, self.seqs
        stride = cfg.block_size // 2
        first = seqs.offsets[seqs.owner[rows]]
        local = rows - first
        start = first + np.maximum(0, (local // stride) * stride + stride - cfg.block_size)
        uniq, which = np.unique(start, return_inverse=True)
        out = np.full((len(rows), k), -1, dtype=np.int64)
        ahead = np.ones((1, cfg.block_size), dtype=np.int64)
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(0, len(uniq) + self.batch_size, self.batch_size))
        for n, a in enumerate(range(0, len(uniq), self.batch_size)):
            sel = order[bounds[n] : bounds[n + 1]]
            if len(sel) == 0:
                continue
            b = windows(seqs, uniq[a : a + self.batch_size], cfg.block_size, ahead, cfg.pad)
            args = [b.idx, b.times, which[sel] - a, rows[sel] - uniq[which[sel]], query[sel]]
            with torch.no_grad():
                cells, _ = self.model.predict(*(torch.from_numpy(np.ascontiguousarray(x)).to(self.device) for x in args), k=k, beam=self.beam)
            out[sel] = cells.cpu().numpy()
        return out


def score_ranked(ranked: np.ndarray, truth: np.ndarray) -> dict:
    return {
        "acc@1": metrics.accuracy_at_k(ranked, truth, 1),
        "acc@5": metrics.accuracy_at_k(ranked, truth, TOPK),
        "mean_km": float(metrics.distance_km(ranked[:, 0], truth).mean()),
        "n": int(len(truth)),
    }


def next_location(test: Sequences, markov: Markov, gpt: GPTScorer | None, s: NextlocEvalSettings) -> list[dict]:
    """Rows of {model, h, acc@1, acc@5, mean_km, n}."""
    last_day = int(test.slot.max()) // SLOTS_PER_DAY
    rows = []
    for h in range(1, s.horizons + 1):
        i, j = pairs_at(test, h)
        keep = test.slot[i] // SLOTS_PER_DAY > last_day - s.eval_days
        i, j = i[keep], j[keep]
        truth = test.cell[j]
        persist = np.full((len(i), TOPK), -1, dtype=np.int64)
        persist[:, 0] = test.cell[i]
        ranked = {"persistence": persist, "markov": markov.rank(h, test.cell[i], TOPK)}
        if gpt is not None:
            ranked["raw_gpt"] = gpt.rank(i, query_features(test.slot[j], test.slot[i]))
        rows += [{"model": m, "h": h, **score_ranked(r, truth)} for m, r in ranked.items()]
    return rows


def trajectory(test: Sequences, markov: Markov, gpt: GPTScorer | None, s: NextlocEvalSettings) -> list[dict]:
    """Rows of {model, geobleu, dtw_km, users}: the last traj_days days predicted from the days before."""
    first_day = int(test.slot.max()) // SLOTS_PER_DAY - s.traj_days + 1
    owner = test.owner
    target = test.slot >= first_day * SLOTS_PER_DAY
    before = np.flatnonzero(~target)
    ctx = np.full(test.n_users, -1, dtype=np.int64)
    ctx[owner[before]] = before  # rows are in time order, so the last write is the last row before
    target &= ctx[owner] >= 0
    ref = np.flatnonzero(target)
    if len(ref) == 0:
        return []
    u, c = owner[ref], ctx[owner[ref]]
    preds = {"persistence": test.cell[c]}
    # chained Markov: one trajectory per user, its steps are the user's reference rows in order
    users, first_ref = np.unique(u, return_index=True)
    step = np.arange(len(ref)) - first_ref[np.searchsorted(users, u)]
    steps = np.full((len(users), int(step.max()) + 1), -1, dtype=np.int64)
    steps[np.searchsorted(users, u), step] = test.slot[ref]
    chained = markov_chain(markov, test.cell[ctx[users]], test.slot[ctx[users]], steps)
    preds["markov"] = chained[np.searchsorted(users, u), step]
    if gpt is not None:
        preds["raw_gpt"] = gpt.rank(c, query_features(test.slot[ref], test.slot[c]), 1)[:, 0]
    d, t = test.slot[ref] // SLOTS_PER_DAY, test.slot[ref] % SLOTS_PER_DAY
    true_xy = np.stack(cell_xy(test.cell[ref]), axis=1)
    out = []
    for m, p in preds.items():
        xy = np.stack(cell_xy(p), axis=1)
        out.append({
            "model": m,
            "geobleu": metrics.per_user_day(metrics.geobleu, test.uids[u], d, t, xy, true_xy),
            "dtw_km": metrics.per_user_day(metrics.dtw_km, test.uids[u], d, t, xy, true_xy),
            "users": int(len(users)),
        })
    return out


def evaluate_nextloc(settings: NextlocEvalSettings, with_gpt: bool = True) -> dict:
    """Run both evaluations, write report.json and report.md under settings.out_dir, return the report."""
    t0 = time.perf_counter()
    seqs = load(settings.data)
    train, test = split_users(seqs, settings.train_uid_below)
    if test.n_users == 0 or train.n_users == 0:
        raise TrainingError(
            f"{settings.data}: train_uid_below={settings.train_uid_below} leaves {train.n_users} training "
            f"and {test.n_users} test users; both must be non-empty"
        )
    if settings.max_test_users:
        test = test.select(np.arange(test.n_users) < settings.max_test_users)
    markov = fit_markov(train, settings.horizons, TOPK)
    gpt, version = None, None
    if with_gpt:
        import torch

        from training.nextloc_train import load_model, pick_device

        if settings.threads:
            torch.set_num_threads(settings.threads)
        device = pick_device(settings.device)
        model, payload = load_model(settings.checkpoint, device)
        gpt, version = GPTScorer(model, test, device, settings.batch_size, settings.beam), payload["version"]
    report = {
        "settings": {k: str(v) for k, v in asdict(settings).items()},
        "model_version": version,
        "test_users": int(test.n_users),
        "next_location": next_location(test, markov, gpt, settings),
        "trajectory": trajectory(test, markov, gpt, settings),
    }
    report["seconds"] = time.perf_counter() - t0
    write_report(report, settings.out_dir)
    return report


def write_report(report: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# Next-location evaluation ({report['test_users']} test users, model {report['model_version']})",
        "",
        "| model | h (slots) | acc@1 | acc@5 | mean error (km) | queries |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['model']} | {r['h']} | {r['acc@1']:.3f} | {r['acc@5']:.3f} | {r['mean_km']:.2f} | {r['n']} |" for r in report["next_location"]]
    lines += ["", "| model | GEO-BLEU | DTW (km) | users |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['geobleu']:.4f} | {r['dtw_km']:.2f} | {r['users']} |" for r in report["trajectory"]]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")


def command(
    data: Path = opt(default_data(), "nextloc_data", "YJMob-format uid,d,t,x,y file (default: the synthetic demo city)"),
    checkpoint: Path = opt(runs_dir() / "encoder" / "raw_gpt.pt", "raw_checkpoint", "RAW GPT checkpoint (mobstream train encoder --objective raw)"),
    out_dir: Path = opt(runs_dir() / "nextloc", "nextloc_out", "folder for report.json and report.md"),
    train_uid_below: int = opt(4000, "train_uid_below", "users with uid below this are training users; the rest are scored"),
    horizons: int = opt(5, "nextloc_horizons", "score horizons 1..N slots (30 min each)"),
    eval_days: int = opt(7, "nextloc_eval_days", "anchors are the observed slots of the last N days"),
    traj_days: int = opt(1, "nextloc_traj_days", "trajectory task: predict the last N days from the days before"),
    max_test_users: int = opt(0, "nextloc_max_test_users", "score only the first N test users (0 = all)"),
    baselines_only: bool = opt(False, "nextloc_baselines_only", "skip the RAW GPT (no checkpoint needed)"),
    device: str = opt("auto", "device", "auto (CUDA when present, else CPU), cpu or cuda"),
) -> None:
    """Next-location (acc@1/@5, km error at 30 min..2.5 h) and next-day GEO-BLEU/DTW: RAW GPT vs baselines."""
    settings = NextlocEvalSettings(
        data=data, checkpoint=checkpoint, out_dir=out_dir, train_uid_below=train_uid_below, horizons=horizons,
        eval_days=eval_days, traj_days=traj_days, max_test_users=max_test_users, device=device,
    )
    report = evaluate_nextloc(settings, with_gpt=not baselines_only)
    typer.echo((settings.out_dir / "report.md").read_text())
    typer.echo(f"wrote {settings.out_dir / 'report.json'} in {report['seconds']:.0f} s")
