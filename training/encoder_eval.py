"""Evaluation of the trajectory encoder on held-out users: commuter profiling and region tasks beside baselines.

Only test users (uid >= train_uid_below) are embedded, probed and pooled; probes are cross-validated
among them (users for profiling, cells for the region tasks). Writes report.md and report.json.
"""

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
from training.encoder_data import (Observations, labels_path_for, load_labels, load_observations, poi_path_for, sample_per_user,
                                   split_by_user)
from training.encoder_features import mobility_features
from training.exceptions import TrainingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderEvalSettings:
    checkpoint: Path = field(default_factory=lambda: runs_dir() / "encoder" / "encoder.pt")
    data: Path = field(default_factory=lambda: data_dir() / "synth" / "cityA_challengedata.csv")
    labels: Path | None = None  # default: labels_city<X>.csv beside the data
    poi: Path | None = None  # default: POIdata_city<X>.csv beside the data
    out: Path = field(default_factory=lambda: runs_dir() / "encoder" / "eval")
    train_uid_below: int | None = None  # default: the value the checkpoint was trained with
    folds: int = 5
    min_visitors: int = 3  # cells visited by fewer test users are left out of the region tasks
    max_tiles: int | None = None  # 8-slot tiles pooled per user profile (a random sample; None = all)
    seed: int = 0
    threads: int = 1


PROBE_CS = tuple(np.logspace(-3, 1, 9))  # the commuter probe's C is chosen among these by inner cross-validation


def probe_classify(feats: np.ndarray, y: np.ndarray, folds: int, seed: int, components: int | None = None,
                   cs: tuple[float, ...] | None = None) -> dict:
    """Cross-validated logistic regression (standardised features, optionally PCA-reduced inside each
    fold to bound the cost of many-class probes): accuracy and F1 (binary, or macro for many classes).
    C = 0.1, or with `cs` the best of them by a 5-fold cross-validation inside each training fold
    (the same procedure for every representation)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [StandardScaler()] + ([PCA(min(components, feats.shape[1]), random_state=seed)] if components else [])
    lr = (LogisticRegressionCV(Cs=list(cs), cv=5, max_iter=3000, l1_ratios=(0.0,), scoring="accuracy", use_legacy_attributes=False)
          if cs else LogisticRegression(max_iter=500, C=0.1))
    pred = cross_val_predict(make_pipeline(*steps, lr), feats, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    avg = "binary" if len(np.unique(y)) == 2 else "macro"
    return {"accuracy": round(float(accuracy_score(y, pred)), 4), "f1": round(float(f1_score(y, pred, average=avg)), 4)}


def probe_regress(feats: np.ndarray, y: np.ndarray, folds: int, seed: int) -> dict:
    """Cross-validated ridge regression (standardised features): R^2 and MAE."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import mean_absolute_error, r2_score
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    pred = cross_val_predict(reg, feats, y, cv=KFold(folds, shuffle=True, random_state=seed))
    return {"r2": round(float(r2_score(y, pred)), 4), "mae": round(float(mean_absolute_error(y, pred)), 4)}


def profiling(emb: dict[str, np.ndarray], uids: np.ndarray, obs: Observations, labels, st: EncoderEvalSettings) -> dict:
    """Commuter identification from each user representation, beside hand-crafted mobility features."""
    if "commuter" not in labels.columns:
        raise TrainingError(f"labels file {st.labels}: no 'commuter' column")
    missing = np.setdiff1d(uids, labels.index.to_numpy())
    if len(missing):
        raise TrainingError(f"labels file {st.labels}: no row for test uid {int(missing[0])} ({len(missing)} missing)")
    y = labels.loc[uids, "commuter"].to_numpy().astype(int)
    rows = {name: probe_classify(e, y, st.folds, st.seed, cs=PROBE_CS) for name, e in emb.items()}
    rows["hand-crafted mobility features"] = probe_classify(mobility_features(obs, uids), y, st.folds, st.seed, cs=PROBE_CS)
    return {"users": int(len(uids)), "commuter_share": round(float(y.mean()), 4),
            "majority_accuracy": round(float(max(y.mean(), 1 - y.mean())), 4), "probes": rows}


def cell_visitors(obs: Observations, uids: np.ndarray, min_visitors: int):
    """Sparse (cells x users) 0/1 visit matrix of cells with at least `min_visitors` test users, and the cell ids."""
    from scipy import sparse

    from models.grid import cell_id

    col = np.searchsorted(uids, obs.uid)
    cells = cell_id(obs.x, obs.y)
    m = sparse.csr_matrix((np.ones(len(cells)), (cells, col)), shape=(int(cells.max()) + 1, len(uids)))
    m.data[:] = 1.0  # duplicates were summed: a visit counts once per user
    keep = np.flatnonzero(np.asarray(m.sum(axis=1)).ravel() >= min_visitors)
    return m[keep], keep


def region_targets(obs: Observations, cells: np.ndarray, poi_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: dominant POI category (-1 if none) and mean occupancy per slot (test users' observations)."""
    import pandas as pd

    from models.grid import cell_id

    n_slots = int(obs.slot.max() - obs.slot.min() + 1)
    occ = np.bincount(cell_id(obs.x, obs.y), minlength=int(cells.max()) + 1)[cells] / n_slots
    if not poi_path.is_file():
        raise TrainingError(f"{poi_path}: no POI file (the synthetic city writes POIdata_city<X>.csv beside its data)")
    poi = pd.read_csv(poi_path)
    for col in ("x", "y", "category", "POI_count"):
        if col not in poi.columns:
            raise TrainingError(f"{poi_path}:1: POI file has no {col!r} column")
    poi["cell"] = cell_id(poi["x"].to_numpy(), poi["y"].to_numpy())
    top = poi.sort_values("POI_count", ascending=False).drop_duplicates("cell").set_index("cell")["category"]
    dominant = top.reindex(cells).fillna(-1).to_numpy().astype(int)
    return dominant, occ


def regions(emb: dict[str, np.ndarray], uids: np.ndarray, obs: Observations, st: EncoderEvalSettings) -> dict:
    """Sum-pool visitors' representations per cell; predict dominant POI category and mean occupancy."""
    visits, cells = cell_visitors(obs, uids, st.min_visitors)
    if len(cells) < 2 * st.folds:
        return {"skipped": f"only {len(cells)} cells have >= {st.min_visitors} test visitors", "cells": int(len(cells))}
    dominant, occ = region_targets(obs, cells, st.poi)
    # Categories with too few cells cannot be cross-validated; keep those with >= 2 * folds cells.
    cats, counts = np.unique(dominant[dominant >= 0], return_counts=True)
    ok = np.isin(dominant, cats[counts >= 2 * st.folds])
    out = {"cells": int(len(cells)), "cells_with_category": int(ok.sum()), "categories": int((counts >= 2 * st.folds).sum()),
           "majority_category_accuracy": round(float(np.bincount(dominant[ok]).max() / max(ok.sum(), 1)), 4), "probes": {}}
    with_category = out["categories"] >= 2
    for name, e in emb.items():
        pooled = np.asarray(visits @ e)  # (cells, D): sum over the cell's visitors
        cat = probe_classify(pooled[ok], dominant[ok], st.folds, st.seed, components=32) if with_category else {"accuracy": float("nan"), "f1": float("nan")}
        out["probes"][name] = {"dominant_category": cat, "log_mean_occupancy": probe_regress(pooled, np.log1p(occ * 100), st.folds, st.seed)}
    return out


def evaluate(st: EncoderEvalSettings) -> dict:
    import torch

    from models import checkpoint
    from models.embedder import TrajectoryEmbedder
    from models.encoder import EncoderConfig, TrajectoryEncoder
    from models.profiles import profile_windows, profiles, summary

    if st.threads > 0:
        torch.set_num_threads(st.threads)
    t0 = time.perf_counter()
    emb = TrajectoryEmbedder.load(st.checkpoint)
    ck = checkpoint.load(st.checkpoint, emb.kind)
    extra = ck["extra"]
    below = st.train_uid_below if st.train_uid_below is not None else int(extra.get("train_uid_below", 4000))
    st = EncoderEvalSettings(**{**st.__dict__, "train_uid_below": below,
                                "labels": st.labels or labels_path_for(st.data), "poi": st.poi or poi_path_for(st.data)})
    labels = load_labels(st.labels)
    _, test = split_by_user(load_observations(st.data), below)
    if len(test) == 0:
        raise TrainingError(f"setting train_uid_below={below}: {st.data} has no test user at or above it")
    w = profile_windows(test.uid, test.slot, test.x, test.y)
    if st.max_tiles is not None:
        w = w.take(sample_per_user(w.uid, st.max_tiles, np.random.default_rng(st.seed)))
    torch.manual_seed(st.seed)
    base = TrajectoryEncoder(EncoderConfig(**ck["model_args"]))
    base.spatial.poi.copy_(ck["state_dict"]["spatial.poi"])  # the POI vectors are data, not learned weights
    windows = {
        "encoder (trained)": emb.embed_windows(w),
        "encoder (untrained, same architecture)": TrajectoryEmbedder(base, "untrained").embed_windows(w),
        # Random embeddings: an i.i.d. Gaussian vector per window, pooled exactly like the encoder's.
        "random embeddings": np.random.default_rng(st.seed).standard_normal((len(w), emb.dim), dtype=np.float32),
    }
    uids = np.unique(w.uid)
    # Profiling reads the compact routine summary of the profile; regions sum-pool the plain mean profile of each visitor.
    reps = {name: summary(w.uid, w.end_slot, e)[1] for name, e in windows.items()}
    plain = {name: profiles(w.uid, w.end_slot, e, time_aware=False)[1] for name, e in windows.items()}
    report = {"checkpoint": str(st.checkpoint), "version": emb.version, "data": str(st.data), "train_uid_below": below,
              "profiling": profiling(reps, uids, test, labels, st)}
    log.info("commuter identification: %s", json.dumps(report["profiling"]["probes"]))
    report["regions"] = regions(plain, uids, test, st)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    st.out.mkdir(parents=True, exist_ok=True)
    (st.out / "report.json").write_text(json.dumps(report, indent=2))
    (st.out / "report.md").write_text(markdown(report))
    return report


def markdown(r: dict) -> str:
    p, g = r["profiling"], r["regions"]
    lines = [f"# Trajectory encoder evaluation\n\nCheckpoint `{r['checkpoint']}` ({r['version']}), data `{r['data']}`, "
             f"test users uid >= {r['train_uid_below']}.\n",
             f"## Commuter identification ({p['users']} test users, {p['commuter_share']:.0%} commuters, "
             f"majority-class accuracy {p['majority_accuracy']:.3f}; logistic probe, {len(p['probes'])} representations)\n",
             "| representation | accuracy | F1 |", "|---|---|---|"]
    lines += [f"| {k} | {v['accuracy']:.3f} | {v['f1']:.3f} |" for k, v in p["probes"].items()]
    if "skipped" in g:
        return "\n".join(lines) + f"\n\n## Region embeddings\n\nSkipped: {g['skipped']}.\n"
    lines += [f"\n## Region embeddings ({g['cells']} cells with >= the minimum of visitors; sum-pooled visitor representations)\n",
              f"Dominant POI category: {g['cells_with_category']} cells, {g['categories']} categories, "
              f"majority-class accuracy {g['majority_category_accuracy']:.3f}.\n",
              "| pooled representation | category accuracy | category macro-F1 | log occupancy R^2 |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['dominant_category']['accuracy']:.3f} | {v['dominant_category']['f1']:.3f} | "
              f"{v['log_mean_occupancy']['r2']:.3f} |" for k, v in g["probes"].items()]
    return "\n".join(lines) + "\n"


def evaluate_command(
    checkpoint: Path = opt(None, "encoder_checkpoint", "encoder checkpoint (default: <runs>/encoder/encoder.pt)"),
    data: Path = opt(None, "data", "YJMob-format uid,d,t,x,y file (default: the synthetic city A in the data dir)"),
    labels: Path = opt(None, "labels", "planted labels file (default: labels_city<X>.csv beside the data)"),
    poi: Path = opt(None, "poi", "POI file (default: POIdata_city<X>.csv beside the data)"),
    out: Path = opt(None, "encoder_eval_out", "report folder (default: <runs>/encoder/eval)"),
    train_uid_below: int = opt(None, "train_uid_below", "test users are uid >= this (default: the checkpoint's)"),
    folds: int = opt(5, "folds", "cross-validation folds"),
    min_visitors: int = opt(3, "min_visitors", "cells visited by fewer test users are left out of the region tasks"),
    seed: int = opt(0, "seed", "random seed"),
    threads: int = opt(1, "threads", "torch CPU threads (0 = torch's default)"),
) -> None:
    """Evaluate the trajectory encoder: commuter identification and region tasks on held-out users."""
    base = EncoderEvalSettings()
    st = EncoderEvalSettings(checkpoint=checkpoint or base.checkpoint, data=data or base.data, labels=labels, poi=poi,
                             out=out or base.out, train_uid_below=train_uid_below, folds=folds, min_visitors=min_visitors,
                             seed=seed, threads=threads)
    r = evaluate(st)
    typer.echo(markdown(r))
    typer.echo(f"report: {st.out / 'report.md'} and report.json")
