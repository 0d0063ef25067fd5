"""The cell drill-down panel: one cell's recent actuals, the forecasts made for them, persistence, and the forecast path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.settings import DashboardSettings
from models.grid import GRID_SIZE, cell_id
from models.slots import SLOT_SECONDS, slot_start
from stream import readers
from stream.readers import CHANNELS, CellHistory

SERIES = {"actual": [], "forecast": [6, 3], "persistence": [2, 2], "forecast path": [1, 0]}
COLORS = ["#f5c542", "#00e5ff", "#8c8c8c", "#ff5ad1"]


def history_frame(h: CellHistory, channel: str, origin: int, path: np.ndarray | None = None) -> pd.DataFrame:
    """Pure: long table (time, series, value) for one channel; the forecast extends one slot past now, and
    `path` (H, 3), the forecasts made at the last closed slot for its next H slots, is the "forecast path",
    drawn from the last actual on."""
    c = CHANNELS.index(channel)
    wide = pd.DataFrame({"slot": h.slots, "actual": h.actual[:, c], "forecast": h.forecast[:, c],
                         "persistence": h.persistence[:, c]})
    long = wide.melt(id_vars=["slot"], var_name="series", value_name="value")
    if path is not None:
        end = int(h.slots[-1]) - 1  # the last closed slot: h.slots runs to the slot after it
        start = h.actual[h.slots == end, c]
        values = np.concatenate([start, path[:, c]])
        long = pd.concat([long, pd.DataFrame({"slot": end + np.arange(len(values)), "series": "forecast path", "value": values})])
    long = long.dropna(subset=["value"]).reset_index(drop=True)
    long.insert(0, "time", pd.to_datetime([slot_start(int(v), origin) for v in long.slot], unit="s", utc=True))
    return long


def errors_of(h: CellHistory, channel: str) -> tuple[float, float, int]:
    """Mean absolute error of the forecasts and of persistence over slots that have both and an actual."""
    c = CHANNELS.index(channel)
    a, f, p = h.actual[:, c], h.forecast[:, c], h.persistence[:, c]
    ok = np.isfinite(a) & np.isfinite(f) & np.isfinite(p)
    if not ok.any():
        return float("nan"), float("nan"), 0
    return float(np.abs(f[ok] - a[ok]).mean()), float(np.abs(p[ok] - a[ok]).mean()), int(ok.sum())


def chart(title: str) -> dict:
    """Vega-Lite spec (a plain dict: no Altair validation on every refresh) for history_frame's table."""
    names = list(SERIES)
    return {
        "title": title, "mark": {"type": "line", "point": {"size": 18}},
        "encoding": {
            "x": {"field": "time", "type": "temporal", "title": None, "axis": {"format": "%a %H:%M"}},
            "y": {"field": "value", "type": "quantitative", "title": "people"},
            "color": {"field": "series", "type": "nominal", "legend": {"orient": "top", "title": None},
                      "scale": {"domain": names, "range": COLORS}},
            "strokeDash": {"field": "series", "type": "nominal", "legend": None,
                           "scale": {"domain": names, "range": list(SERIES.values())}},
            "tooltip": [{"field": "time", "type": "temporal", "format": "%a %H:%M"},
                        {"field": "slot", "type": "quantitative"}, {"field": "series", "type": "nominal"},
                        {"field": "value", "type": "quantitative", "format": ".2f"}],
        },
    }


def cell_inputs() -> tuple[int, int]:
    """The drill-down cell, kept under "cell" (the map marks it; the hottest-cells table sets it). The inputs'
    keys carry a generation that the table bumps, so a cell picked there shows up in fresh inputs."""
    x0, y0 = st.session_state.get("cell", (100, 100))
    gen = st.session_state.get("cell_gen", 0)
    a, b = st.columns(2)
    x = int(a.number_input("x (east)", 1, GRID_SIZE, value=x0, key=f"cell_x:{gen}"))
    y = int(b.number_input("y (north)", 1, GRID_SIZE, value=y0, key=f"cell_y:{gen}"))
    st.session_state["cell"] = (x, y)
    return x, y


def panel(s: DashboardSettings, city: str, channel: str) -> None:
    latest, _ = data.now(s)
    if city not in latest:
        st.info("No slot has closed yet: nothing to drill into.", icon="⏳")
        return
    x, y = cell_inputs()
    end = latest[city]
    r, k = data.client(s), data.keys(s)
    h = readers.cell_history(r, k, city, int(cell_id(x, y)), end, s.history_slots)
    path = readers.forecast_path(r, k, city, int(cell_id(x, y)), end)
    df = history_frame(h, channel, s.origin, path)
    hours = s.history_slots * SLOT_SECONDS / 3600
    st.vega_lite_chart(df, chart(f"Cell ({x}, {y}) · {channel} · last {hours:g} h"), width="stretch", height=320)
    model, persistence, n = errors_of(h, channel)
    a, b = st.columns(2)
    a.metric("Forecast MAE", "—" if n == 0 else f"{model:.2f}", help=f"over {n} slots with a forecast")
    b.metric("Persistence MAE", "—" if n == 0 else f"{persistence:.2f}",
             delta=None if n == 0 else f"{model - persistence:+.2f} model − persistence", delta_color="inverse")
    if not np.isfinite(h.forecast).any():
        st.caption("No forecasts stored for this cell: the worker's forecaster is off or has not run yet.")
    elif np.isfinite(path[:, CHANNELS.index(channel)]).any():
        st.caption("Forecast path (made at the last close): " + " · ".join(
            f"+{30 * i} min {v:.2f}" for i, v in enumerate(path[:, CHANNELS.index(channel)], 1) if np.isfinite(v)))
