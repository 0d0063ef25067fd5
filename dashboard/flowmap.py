"""The live flow map panel: the city's 200x200 grid as a heatmap of actuals, forecasts or errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import data, render
from dashboard.settings import DashboardSettings
from dashboard.timefmt import slot_label, wall
from models.grid import GridSpec, cell_xy
from stream.readers import CHANNELS

VIEWS = ("actual", "forecast", "error")
HORIZONS = (1, 2, 3, 4)  # slots ahead the worker forecasts (stream.outputs)
VIEW_HELP = {
    "actual": "flows of the newest published slot",
    "forecast": "the model's expected count, made when the newest published slot closed",
    "error": "forecast minus actual for the newest published slot (red: over-forecast, blue: under)",
}


def horizon_label(h: int) -> str:
    return f"{30 * h} min" if h < 2 else f"{h / 2:g} h"


@dataclass(frozen=True)
class MapFrame:
    """What one refresh shows: the grid values (y, x), blank cells, the scale, and the slot it is for."""

    values: np.ndarray
    blank: np.ndarray
    scale: render.Scale
    slot: int
    note: str = ""


def frame(view: str, channel: str, slot: int, actual, forecast_next, forecast_now, horizon: int = 1) -> MapFrame:
    """Pure: pick the grid of a view. actual = flows of `slot`; forecast_next = made at `slot` for slot + horizon;
    forecast_now = made at slot - horizon for `slot` (all (3, H, W), forecasts NaN where none)."""
    c = CHANNELS.index(channel)
    if view == "actual":
        v = actual[c].astype(np.float64)
        return MapFrame(v, v == 0, render.count_scale(v), slot)
    if view == "forecast":
        v = forecast_next[c].astype(np.float64)
        # `slot` is published (panel), so no forecast for it means the worker ran without a forecaster.
        note = "" if np.isfinite(v).any() else (f"slot {slot} was published without forecasts: the worker has no "
                                                "forecaster (set --forecaster / MOBSTREAM_FORECASTER)")
        return MapFrame(v, ~np.isfinite(v) | (np.round(v, 2) == 0), render.count_scale(v), slot + horizon, note)
    f = forecast_now[c].astype(np.float64)
    a = actual[c].astype(np.float64)
    err = np.where(np.isfinite(f), f, np.nan) - a
    blank = ~np.isfinite(err) | ((a == 0) & (np.abs(np.nan_to_num(f)) < 0.5))
    note = "" if np.isfinite(f).any() else "no forecast was made for this slot (is the worker's forecaster set?)"
    return MapFrame(err, blank, render.error_scale(err[~blank]), slot, note)


def image(fr: MapFrame, mark: tuple[int, int] | None = None) -> bytes:
    big = render.upscale(render.colorize(fr.values, fr.scale, fr.blank))
    if mark is not None:
        render.mark_cell(big, mark[0], mark[1], fr.values.shape[0])
    return render.png(big)


@st.cache_data(show_spinner=False, max_entries=8)
def rendered(view: str, channel: str, slot: int, actual, forecast_next, forecast_now, mark, horizon: int = 1):
    """(frame, PNG, hottest cells) of one view; cached on its inputs, so a refresh within a slot only
    hashes the grids instead of drawing them again."""
    fr = frame(view, channel, slot, actual, forecast_next, forecast_now, horizon)
    return fr, image(fr, mark), top_cells(fr.values, fr.blank)


def top_cells(values: np.ndarray, blank: np.ndarray, n: int = 12) -> pd.DataFrame:
    """The n cells of largest |value| as a table (x, y, cell id, value)."""
    flat = np.where(blank, 0, np.abs(np.nan_to_num(values))).ravel()
    n = int(min(n, np.count_nonzero(flat)))
    idx = np.argpartition(-flat, n - 1)[:n] if n else np.zeros(0, dtype=np.int64)
    idx = idx[np.argsort(-flat[idx], kind="stable")]
    x, y = cell_xy(idx, values.shape[1])
    return pd.DataFrame({"x": x, "y": y, "cell": idx, "value": values.ravel()[idx].round(2)})


def _pick_from_table() -> None:
    # A row click in the "hottest cells" table moves the drill-down to that cell.
    event = st.session_state.get("top_cells_table")
    rows = getattr(getattr(event, "selection", None), "rows", None) or []
    table = st.session_state.get("_top_cells")
    if rows and table is not None and rows[0] < len(table):
        st.session_state["cell"] = (int(table.x.iloc[rows[0]]), int(table.y.iloc[rows[0]]))
        st.session_state["cell_gen"] = st.session_state.get("cell_gen", 0) + 1


def header(s: DashboardSettings, city: str, slot: int, shown: int, wm: dict[int, float]) -> None:
    a, b, c = st.columns([3, 2, 2])
    a.metric("Last closed slot", f"{slot}", help="the latest slot every partition has closed and assembled")
    a.caption(slot_label(slot, s.origin) + ("" if shown == slot else f"; map: slot {shown}, the newest published"))
    if wm:
        low = min(wm.values())
        b.metric("Watermark", wall(low)[4:-4], help="lowest partition watermark (max event time seen)")
        b.caption(f"{len(wm)} partition(s); highest {wall(max(wm.values()))[4:]}")
    c.metric("City", city)


def panel(s: DashboardSettings, city: str, view: str, channel: str, horizon: int = 1) -> None:
    latest, wm = data.now(s)
    if city not in latest:
        st.info("No slot has closed yet: the map appears when the worker assembles its first slot. "
                "Replay some data (`mobstream replay FILE`) with a worker running (`mobstream worker`).",
                icon="⏳")
        return
    # The newest assembled slot's forecasts come a moment later: show the newest published slot.
    slot = data.published(s, city)
    if slot is None:
        st.info(f"Slot {latest[city]} has closed; the map appears once the worker has published its outputs.",
                icon="⏳")
        return
    header(s, city, latest[city], slot, wm)
    url = data.redis_url(s)
    mark = st.session_state.get("cell")
    fr, png, table = rendered(view, channel, slot, data.flows(url, s.app, city, slot),
                              data.forecasts(url, s.app, city, slot, horizon) if view == "forecast" else None,
                              data.forecasts(url, s.app, city, slot - horizon, horizon) if view == "error" else None,
                              mark, horizon)
    if fr.note:
        st.warning(fr.note, icon="ℹ️")
    left, right = st.columns([3, 2])
    with left:
        ahead = f" · {horizon_label(horizon)} ahead" if view != "actual" else ""
        st.markdown(f"**{view.capitalize()} {channel}** — {VIEW_HELP[view]}{ahead} · {slot_label(fr.slot, s.origin)}")
        if s.has_origin and st.session_state.get("on_map"):
            spec = GridSpec(s.grid_origin_lat, s.grid_origin_lon)
            st.pydeck_chart(render.deck(render.colorize(fr.values, fr.scale, fr.blank), fr.blank, spec),
                            height=640)
        else:
            st.image(png, width="stretch")
        lo, hi = fr.scale.vmin, fr.scale.vmax
        st.image(render.legend(fr.scale), width=256)
        st.caption(f"{lo:g} → {hi:g}{' (log scale)' if fr.scale.log else ''}; grid lines every 50 cells "
                   "(25 km); x grows east, y north; dark = no activity")
    with right:
        vals = fr.values[~fr.blank]
        k1, k2 = st.columns(2)
        k1.metric("Active cells", f"{int((~fr.blank).sum()):,}")
        if view == "error":
            k2.metric("Mean |error|", f"{np.nanmean(np.abs(vals)) if vals.size else 0:.2f}")
        else:
            k2.metric("Total", f"{np.nansum(vals):,.0f}")
        st.session_state["_top_cells"] = table
        st.markdown("**Hottest cells** (click a row to drill down)")
        st.dataframe(table, hide_index=True, key="top_cells_table", on_select=_pick_from_table,
                     selection_mode="single-row", height=300)
