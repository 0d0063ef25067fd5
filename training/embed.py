"""The `mobstream embed` job: test users' 512-d embeddings to Parquet, a 2-D PCA (+ its projection), plots."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import typer

from mobstream.paths import data_dir, runs_dir
from mobstream.settings import opt
from models.grid import GRID_SIZE
from training.encoder_data import Observations, labels_path_for, load_labels, load_observations, split_by_user
from training.exceptions import TrainingError


@dataclass(frozen=True)
class EmbedSettings:
    checkpoint: Path = field(default_factory=lambda: runs_dir() / "encoder" / "encoder.pt")
    data: Path = field(default_factory=lambda: data_dir() / "synth" / "cityA_challengedata.csv")
    labels: Path | None = None  # default: labels_city<X>.csv beside the data, when it exists
    out: Path = field(default_factory=lambda: runs_dir() / "embed")
    train_uid_below: int = 4000
    color_by: str = "commuter"
    users: tuple[int, ...] = ()  # users whose 200x200 visit heatmaps are drawn
    threads: int = 1


def heatmap(obs: Observations, uid: int, size: int = GRID_SIZE) -> np.ndarray:
    """(size, size) visit counts of one user, indexed [y-1, x-1] (row 0 = south)."""
    sel = obs.uid == uid
    h = np.zeros((size, size), dtype=np.int64)
    np.add.at(h, (obs.y[sel] - 1, obs.x[sel] - 1), 1)
    return h


def write_parquet(path: Path, uids: np.ndarray, emb: np.ndarray, labels) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {"uid": pa.array(uids)}
    cols.update({f"e{i}": pa.array(emb[:, i]) for i in range(emb.shape[1])})
    if labels is not None:
        lab = labels.reindex(uids)
        for c in lab.columns:
            cols[c] = pa.array(lab[c].to_numpy())
    pq.write_table(pa.table(cols), path)


def plot_scatter(path: Path, xy: np.ndarray, color, color_by: str, version: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    if color is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.6)
    else:
        values = np.asarray(color)
        for v in np.unique(values):
            sel = values == v
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.6, label=f"{color_by}={v}")
        ax.legend(markerscale=3, fontsize=8)
    ax.set(xlabel="PC 1", ylabel="PC 2", title=f"test-user embeddings ({version})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_heatmaps(path: Path, obs: Observations, users: tuple[int, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(users), figsize=(4 * len(users), 4), dpi=120, squeeze=False)
    for ax, u in zip(axes[0], users):
        h = heatmap(obs, u)
        ax.imshow(np.log1p(h), origin="lower", cmap="magma", extent=(0.5, GRID_SIZE + 0.5, 0.5, GRID_SIZE + 0.5))
        ax.set(title=f"user {u}: {int(h.sum())} records, {int((h > 0).sum())} cells", xlabel="x", ylabel="y")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_embed(st: EmbedSettings) -> dict:
    import joblib
    import torch
    from sklearn.decomposition import PCA

    from models.embedder import TrajectoryEmbedder

    if st.threads > 0:
        torch.set_num_threads(st.threads)
    emb = TrajectoryEmbedder.load(st.checkpoint)
    _, test = split_by_user(load_observations(st.data), st.train_uid_below)
    if len(test) == 0:
        raise TrainingError(f"setting train_uid_below={st.train_uid_below}: {st.data} has no test user at or above it")
    missing = [u for u in st.users if not np.any(test.uid == u)]
    if missing:
        raise TrainingError(f"setting users: {missing} are not test users with observations in {st.data}")
    labels_path = st.labels or labels_path_for(st.data)
    labels = load_labels(labels_path) if (st.labels or labels_path.is_file()) else None
    if labels is not None and st.color_by not in labels.columns:
        raise TrainingError(f"setting color_by={st.color_by!r}: {labels_path} has columns {', '.join(labels.columns)}")
    uids, e = emb.embed_users(test.uid, test.slot, test.x, test.y)
    st.out.mkdir(parents=True, exist_ok=True)
    write_parquet(st.out / "embeddings.parquet", uids, e, labels)
    pca = PCA(n_components=2, random_state=0).fit(e)
    joblib.dump(pca, st.out / "pca.joblib")
    xy = pca.transform(e)
    color = labels.reindex(uids)[st.color_by].to_numpy() if labels is not None else None
    plot_scatter(st.out / f"pca_{st.color_by}.png", xy, color, st.color_by, emb.version)
    files = ["embeddings.parquet", "pca.joblib", f"pca_{st.color_by}.png"]
    if st.users:
        plot_heatmaps(st.out / "heatmaps.png", test, st.users)
        files.append("heatmaps.png")
    return {"out": str(st.out), "files": files, "users": int(len(uids)), "dim": int(e.shape[1]), "version": emb.version,
            "pca_explained_variance": [round(float(v), 4) for v in pca.explained_variance_ratio_]}


def parse_users(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(u) for u in text.split(",") if u.strip())
    except ValueError as exc:
        raise TrainingError(f"setting users={text!r}: give comma-separated uids, e.g. 4001,4002") from exc


def embed_command(
    checkpoint: Path = opt(None, "encoder_checkpoint", "encoder checkpoint (default: <runs>/encoder/encoder.pt)"),
    data: Path = opt(None, "data", "YJMob-format uid,d,t,x,y file (default: the synthetic city A in the data dir)"),
    labels: Path = opt(None, "labels", "labels file to join and color by (default: labels_city<X>.csv beside the data, if any)"),
    out: Path = opt(None, "embed_out", "output folder (default: <runs>/embed)"),
    train_uid_below: int = opt(4000, "train_uid_below", "embed the test users: uid >= this"),
    color_by: str = opt("commuter", "color_by", "labels column that colors the PCA scatter"),
    users: str = opt("", "users", "comma-separated uids whose 200x200 visit heatmaps to draw, e.g. 4001,4002"),
    threads: int = opt(1, "threads", "torch CPU threads (0 = torch's default)"),
) -> None:
    """Embed the test users (Parquet), project to 2-D with PCA (saved), plot the scatter and visit heatmaps."""
    base = EmbedSettings()
    st = EmbedSettings(checkpoint=checkpoint or base.checkpoint, data=data or base.data, labels=labels, out=out or base.out,
                       train_uid_below=train_uid_below, color_by=color_by, users=parse_users(users), threads=threads)
    typer.echo(json.dumps(run_embed(st), indent=2))
