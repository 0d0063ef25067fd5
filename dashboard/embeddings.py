"""The embedding explorer: a 2-D PCA of the current user embeddings on stable axes, and the trajectories
of the users selected in it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import data, render
from dashboard.settings import DashboardSettings
from models.grid import GRID_SIZE, cell_xy
from stream import readers

NO_COLOR = "none"
ACTIVITY = "slots seen (of 8)"
HOME_KM = "km from home (labels)"


class Projection:
    """A PCA fitted once (or the one `mobstream embed` saved) and then only applied, so points keep
    their place between refreshes."""

    def __init__(self, emb: np.ndarray, saved=None) -> None:
        from sklearn.decomposition import PCA

        self.dim = emb.shape[1]
        self.saved = saved is not None
        self.pca = saved if saved is not None else PCA(n_components=2, svd_solver="randomized",
                                                        random_state=0).fit(emb)

    def __call__(self, emb: np.ndarray) -> np.ndarray:
        return self.pca.transform(emb)  # (N, 2)


@st.cache_resource(show_spinner=False)
def _projections() -> dict:
    # Shared by every browser session of this server, so all viewers see the same axes.
    return {}


@st.cache_resource(show_spinner=False)
def saved_pca(path: str):
    """The PCA `mobstream embed` saved (pca.joblib: a fitted sklearn PCA, a file this project wrote)."""
    import joblib

    return joblib.load(path)


def projection(key: tuple, emb: np.ndarray, pca_path=None, refit: bool = False) -> Projection:
    got = _projections()
    if refit or key not in got or got[key].dim != emb.shape[1]:
        saved = saved_pca(str(pca_path)) if pca_path is not None and not refit else None
        if saved is not None and getattr(saved, "n_features_in_", None) != emb.shape[1]:
            st.warning(f"{pca_path} projects {saved.n_features_in_}-d embeddings, these are {emb.shape[1]}-d: "
                       "fitting a new PCA instead (setting MOBSTREAM_PCA)", icon="⚠️")
            saved = None
        got[key] = Projection(emb, saved)
    return got[key]


@st.cache_data(show_spinner=False)
def labels(path: str) -> pd.DataFrame:
    """The synthetic city's planted labels (uid,home_x,home_y,work_x,work_y,commuter,profile,...)."""
    df = pd.read_csv(path)
    df["uid"] = df["uid"].astype(str)
    return df.set_index("uid")


def activity(cells: dict[str, dict[int, int]], uids: list[str], end: int) -> np.ndarray:
    """Pure: number of the last 8 slots (ending at `end`) in which each user was seen."""
    return np.array([sum(1 for s in cells.get(u, {}) if end - 8 < s <= end) for u in uids])


def last_cells(cells: dict[str, dict[int, int]], uids: list[str]) -> np.ndarray:
    """Pure: each user's most recent cell in the window (-1 if none)."""
    return np.array([cells[u][max(cells[u])] if cells.get(u) else -1 for u in uids], dtype=np.int64)


def visit_grid(cells: dict[str, dict[int, int]], size: int = GRID_SIZE) -> np.ndarray:
    """Pure: (size, size) counts of window slots spent in each cell by the given users (row = y - 1)."""
    ids = np.array([c for h in cells.values() for c in h.values() if 0 <= c < size * size], dtype=np.int64)
    return np.bincount(ids, minlength=size * size).reshape(size, size).astype(np.float64)


def crop(grid: np.ndarray, pad: int = 6) -> tuple[np.ndarray, int, int]:
    """The smallest square around the non-zero cells (plus pad): (sub-grid, x0, y0), 1-based offsets."""
    ys, xs = np.nonzero(grid)
    if not len(xs):
        return grid, 1, 1
    side = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1 + 2 * pad
    side = min(side, grid.shape[0])
    x0 = int(np.clip((xs.min() + xs.max()) // 2 - side // 2, 0, grid.shape[1] - side))
    y0 = int(np.clip((ys.min() + ys.max()) // 2 - side // 2, 0, grid.shape[0] - side))
    return grid[y0:y0 + side, x0:x0 + side], x0 + 1, y0 + 1


def color_options(s: DashboardSettings) -> list[str]:
    opts = [NO_COLOR, ACTIVITY]
    if s.labels is not None and s.labels.exists():
        cols = [c for c in labels(str(s.labels)).columns if c not in ("home_x", "home_y", "work_x", "work_y")]
        opts += [HOME_KM] + [f"label: {c}" for c in cols]
    return opts


def scatter(df: pd.DataFrame, color: str) -> tuple[pd.DataFrame, dict]:
    """(data, Vega-Lite spec) of the PCA scatter with a rectangle selection named "brush"."""
    enc = {"x": {"field": "pc1", "type": "quantitative", "title": "PC 1"},
           "y": {"field": "pc2", "type": "quantitative", "title": "PC 2"},
           "tooltip": [{"field": "uid", "type": "nominal"}]}
    if color != NO_COLOR:
        # Vega-Lite reads ':' in a field name as a type suffix: plot the column under a plain name.
        df = df.rename(columns={color: "value"})
        numeric = pd.api.types.is_numeric_dtype(df["value"]) and df["value"].nunique() > 8
        enc["color"] = {"field": "value", "type": "quantitative" if numeric else "nominal", "title": color,
                        "scale": {"scheme": "viridis" if numeric else "tableau10"}}
        enc["tooltip"].append({"field": "value", "title": color})
    spec = {"mark": {"type": "circle", "size": 14, "opacity": 0.75}, "encoding": enc,
            "params": [{"name": "brush", "select": {"type": "interval", "encodings": ["x", "y"]}}]}
    return df, spec


def selected(df: pd.DataFrame, event) -> list[str]:
    """Uids inside the brushed rectangle of the scatter (none when nothing is brushed)."""
    box = (getattr(event, "selection", None) or {}).get("brush") or {}
    if "pc1" not in box or "pc2" not in box:
        return []
    (x0, x1), (y0, y1) = sorted(box["pc1"]), sorted(box["pc2"])
    hit = df.pc1.between(x0, x1) & df.pc2.between(y0, y1)
    return df.uid[hit].tolist()


def panel(s: DashboardSettings, city: str) -> None:
    latest, _ = data.now(s)
    if city not in latest:
        st.info("No slot has closed yet: no embeddings to show.", icon="⏳")
        return
    slot = latest[city]
    url = data.redis_url(s)
    uids, emb = data.embeddings(url, s.app, city, slot, s.max_users)
    if not uids:
        st.info("No user embeddings in Redis: the worker's embedder is off (no checkpoint set) or has not run yet.",
                icon="ℹ️")
        return
    top = st.columns([2, 1, 1])
    color = top[0].selectbox("Color by", color_options(s), key="emb_color")
    refit = top[2].button("Refit axes", help="fit the PCA again on the current embeddings")
    proj = projection((url, s.app, city), emb, s.pca, refit)
    xy = proj(emb)
    top[1].metric("Users", f"{len(uids):,}", help=f"at most {s.max_users:,} (setting max_users); axes: "
                  + ("the saved PCA" if proj.saved else "a PCA fitted on the first embeddings seen"))
    df = pd.DataFrame({"uid": uids, "pc1": xy[:, 0], "pc2": xy[:, 1]})
    cells = None
    if color == ACTIVITY or color == HOME_KM:
        cells = readers.user_cells(data.client(s), data.keys(s), city, uids, slot)
    if color == ACTIVITY:
        df[color] = activity(cells, uids, slot)
    elif color == HOME_KM or color.startswith("label: "):
        lab = labels(str(s.labels)).reindex(df.uid)
        if color == HOME_KM:
            lx, ly = cell_xy(last_cells(cells, uids))
            df[color] = (np.hypot(lx - lab.home_x.to_numpy(), ly - lab.home_y.to_numpy()) * 0.5).round(1)
        else:
            df[color] = lab[color[len("label: "):]].to_numpy()
    left, right = st.columns([3, 2])
    with left:
        event = st.vega_lite_chart(*scatter(df, color), on_select="rerun", key="emb_scatter", width="stretch",
                                   height=480)
    with right:
        pick = selected(df, event)
        if not pick:
            st.info("Drag a rectangle on the scatter to select users and see where they have been.", icon="👈")
            return
        traj = readers.user_cells(data.client(s), data.keys(s), city, pick[:2000], slot)
        grid, x0, y0 = crop(visit_grid(traj))
        sc = render.count_scale(grid, "viridis")
        st.markdown(f"**{len(pick):,} users selected**: slots spent per cell over their last 8 slots")
        st.image(render.png(render.upscale(render.colorize(grid, sc, grid == 0), k=max(2, 400 // grid.shape[0]),
                                           every=10**6)), width="stretch")
        st.caption(f"cells x {x0}–{x0 + grid.shape[1] - 1}, y {y0}–{y0 + grid.shape[0] - 1} (north up); "
                   f"brightest = {sc.vmax:g} slots")
        st.dataframe(df[df.uid.isin(pick)].head(200), hide_index=True, height=180)
