"""The dashboard's entry page (`streamlit run dashboard/app.py`): sidebar selectors and four panels,
each refreshed on its own timer so the page never flickers, each guarded so it never shows a traceback."""

from __future__ import annotations

import streamlit as st

from dashboard import data, drilldown, embeddings, flowmap, health
from dashboard.settings import DashboardSettings
from mobstream.errors import MobstreamError
from stream.readers import CHANNELS

st.set_page_config(page_title="mobstream · live mobility", page_icon="🛰️", layout="wide")


def load_settings() -> DashboardSettings:
    try:
        return DashboardSettings.from_env()
    except MobstreamError as exc:
        st.error(f"Bad dashboard setting: {exc}", icon="⚠️")
        st.stop()


def connect(s: DashboardSettings) -> list[str]:
    """The cities with a closed slot, or a clear message and a retry timer when Redis cannot be read."""
    try:
        latest, _ = data.now(s)
        return sorted(latest)
    except Exception as exc:  # noqa: BLE001 - shown as a message, never a traceback
        st.error(f"**No connection** — {data.describe(exc, s)}", icon="🔌")
        st.fragment(run_every=max(s.refresh, 2.0))(_retry)(s)
        st.stop()


def _retry(s: DashboardSettings) -> None:
    try:
        data.now(s)
    except Exception:  # noqa: BLE001 - still down: wait for the next tick
        st.caption("retrying…")
        return
    st.rerun(scope="app")


def sidebar(s: DashboardSettings, cities: list[str]) -> tuple[str, str, str, int]:
    with st.sidebar:
        st.title("mobstream")
        st.caption("live human mobility · 500 m cells · 30-minute slots")
        city = st.selectbox("City", cities or ["A"], key="city")
        view = st.radio("Map shows", flowmap.VIEWS, horizontal=True, key="view")
        channel = st.radio("Channel", CHANNELS, horizontal=True, key="channel")
        horizon = st.radio("Forecast ahead", flowmap.HORIZONS, horizontal=True, key="horizon",
                           format_func=flowmap.horizon_label,
                           help="forecast and error views: the forecast made this many 30-minute slots before")
        if s.has_origin:
            st.toggle("Show on the map (lat/lon)", key="on_map",
                      help=f"grid south-west corner at {s.grid_origin_lat}, {s.grid_origin_lon}")
        st.divider()
        st.caption(f"app `{s.app}` · refresh every {s.refresh:g} s · read-only")
    return city, view, channel, horizon


def main() -> None:
    s = load_settings()
    cities = connect(s)
    city, view, channel, horizon = sidebar(s, cities)
    every = s.refresh

    @st.fragment(run_every=every)
    def live_map() -> None:
        with data.guard("Flow map", s):
            flowmap.panel(s, city, view, channel, horizon)

    @st.fragment(run_every=every)
    def cell() -> None:
        with data.guard("Cell drill-down", s):
            drilldown.panel(s, city, channel)

    @st.fragment(run_every=every * 4)
    def users() -> None:
        with data.guard("Embedding explorer", s):
            embeddings.panel(s, city)

    @st.fragment(run_every=every)
    def system() -> None:
        with data.guard("Workers", s):
            health.workers_panel(s)
        with data.guard("Forecast error", s):
            health.error_panel(s, city, horizon)

    # Lazy tabs: only the open tab runs, so a refresh pays for what is on screen; the open tab is in
    # the URL (?tab=System), so a link opens the same view.
    tab_map, tab_users, tab_system = st.tabs(["Flow map", "Embeddings", "System"], key="tab", bind="query-params")
    if tab_map.open:
        with tab_map:
            live_map()
            st.subheader("Cell drill-down")
            cell()
    if tab_users.open:
        with tab_users:
            users()
    if tab_system.open:
        with tab_system:
            system()


main()
