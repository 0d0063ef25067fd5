"""The system panel: throughput, consumer lag, dead letters, slot-close latency, and the live forecast
error beside persistence's, with short time series kept in the browser session."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import data, metrics
from dashboard.settings import DashboardSettings
from stream import readers

HISTORY = 240  # refreshes kept for the charts (12 minutes at 3 s)


def _history() -> dict:
    return st.session_state.setdefault("_health", {"prev": None, "rows": []})


def series(rows: list[metrics.Rates]) -> pd.DataFrame:
    return pd.DataFrame({
        "time": pd.to_datetime([r.at for r in rows], unit="s", utc=True),
        "pings/s": [r.pings_per_s for r in rows],
        "consumer lag": [r.lag for r in rows],
        "slot close ms": [np.nan if r.close_ms is None else r.close_ms for r in rows],
    }).set_index("time")


def error_chart(err: dict[str, np.ndarray]) -> tuple[pd.DataFrame, dict]:
    """(data, Vega-Lite spec): the model's and persistence's MAE per closed slot."""
    df = pd.DataFrame({"slot": err["slot"], "model": err["model"], "persistence": err["persistence"]})
    long = df.melt(id_vars=["slot"], value_vars=["model", "persistence"], var_name="forecast", value_name="MAE")
    spec = {
        "title": "Live forecast error (mean |forecast − actual| per closed slot)",
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "slot", "type": "quantitative", "axis": {"format": "d"}},
            "y": {"field": "MAE", "type": "quantitative"},
            "color": {"field": "forecast", "type": "nominal", "legend": {"orient": "top", "title": None},
                      "scale": {"domain": ["model", "persistence"], "range": ["#00e5ff", "#8c8c8c"]}},
            "tooltip": [{"field": "slot", "type": "quantitative"}, {"field": "forecast", "type": "nominal"},
                        {"field": "MAE", "type": "quantitative", "format": ".3f"}],
        },
    }
    return long.dropna(), spec


def workers_panel(s: DashboardSettings) -> None:
    if not s.metrics_urls:
        st.info("No worker metrics: set MOBSTREAM_METRICS_URLS (e.g. http://127.0.0.1:9108/metrics) "
                "or `--metrics-urls` to see throughput, lag and dead letters.", icon="ℹ️")
        return
    snap = metrics.scrape(s.metrics_urls)
    h = _history()
    if h["prev"] is not None:
        h["rows"] = (h["rows"] + [metrics.rates(h["prev"], snap)])[-HISTORY:]
    h["prev"] = snap
    for d in snap.down:
        st.warning(f"metrics endpoint not answering: {d}", icon="⚠️")
    last = h["rows"][-1] if h["rows"] else None
    a, b, c, d = st.columns(4)
    a.metric("Pings/s", "…" if last is None else f"{last.pings_per_s:,.0f}", help="all outcomes, summed over workers")
    b.metric("Consumer lag", f"{snap.lag:,.0f} msgs")
    c.metric("Slot close", "—" if last is None or last.close_ms is None else f"{last.close_ms:,.1f} ms",
             help="mean wall time to close a slot, since the last refresh")
    d.metric("Workers up", f"{snap.up}/{len(s.metrics_urls)}")
    if h["rows"]:
        df = series(h["rows"])
        g1, g2, g3 = st.columns(3)
        g1.caption("pings/s")
        g1.line_chart(df[["pings/s"]], height=160)
        g2.caption("consumer lag (messages)")
        g2.line_chart(df[["consumer lag"]], height=160)
        g3.caption("slot close (ms)")
        g3.line_chart(df[["slot close ms"]].dropna(), height=160)
    dead = pd.DataFrame(sorted(snap.dead.items()), columns=["reason", "dead letters"])
    st.markdown("**Dead letters by reason** (since the workers started)")
    if dead.empty or dead["dead letters"].sum() == 0:
        st.caption("none")
    else:
        st.bar_chart(dead.set_index("reason"), height=180, horizontal=True)


def error_panel(s: DashboardSettings, city: str, horizon: int = 1) -> None:
    err = readers.errors(data.client(s), data.keys(s), city, last=s.history_slots * 2, horizon=horizon)
    st.caption(f"forecasts made {horizon} slot(s) ({30 * horizon} min) before the slot they are for")
    if len(err["slot"]) == 0:
        st.info("No live forecast error yet: it appears once a slot that had a forecast closes "
                "(needs the worker's forecaster).", icon="ℹ️")
        return
    m, p = err["model"][-1], err["persistence"][-1]
    both = bool(np.isfinite(m) and np.isfinite(p))
    a, b = st.columns(2)
    a.metric("Model MAE (last slot)", f"{m:.3f}" if np.isfinite(m) else "—",
             help="no forecast was made for this slot (worker's forecaster off)" if not np.isfinite(m) else None)
    b.metric("Persistence MAE (last slot)", f"{p:.3f}" if np.isfinite(p) else "—",
             delta=f"{m - p:+.3f} model − persistence" if both else None, delta_color="inverse")
    st.vega_lite_chart(*error_chart(err), width="stretch", height=260)
