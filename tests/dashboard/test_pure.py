"""The dashboard's pure parts: settings round trip, metrics parsing, map frames, images, drill-down maths."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard import drilldown, embeddings, flowmap, metrics, render
from dashboard.settings import DashboardSettings, split_urls
from mobstream.errors import ConfigError
from stream.readers import CellHistory

EXPOSITION = """\
# TYPE mobstream_pings_total counter
mobstream_pings_total{outcome="accepted"} 90.0
mobstream_pings_total{outcome="dead"} 10.0
# TYPE mobstream_dead_letters_total counter
mobstream_dead_letters_total{reason="late"} 4.0
mobstream_dead_letters_total{reason="bad_json"} 6.0
# TYPE mobstream_consumer_lag_messages gauge
mobstream_consumer_lag_messages{partition="0"} 3.0
mobstream_consumer_lag_messages{partition="1"} 4.0
# TYPE mobstream_slot_close_seconds histogram
mobstream_slot_close_seconds_bucket{le="+Inf"} 2.0
mobstream_slot_close_seconds_sum 0.5
mobstream_slot_close_seconds_count 2.0
# TYPE mobstream_forecast_mae gauge
mobstream_forecast_mae{model="model"} 0.4
mobstream_forecast_mae{model="persistence"} 0.6
"""


def test_settings_round_trip_through_env():
    s = DashboardSettings(redis_url="redis://h:1/0", app="x", refresh=2.5, port=9000,
                          metrics_urls=("http://a/metrics", "http://b/metrics"), grid_origin_lat=35.3,
                          grid_origin_lon=139.2, history_slots=24, max_users=100)
    assert DashboardSettings.from_env(s.to_env()) == s
    assert DashboardSettings.from_env({}) == DashboardSettings()


@pytest.mark.parametrize("env,name", [({"MOBSTREAM_REFRESH": "0.1"}, "MOBSTREAM_REFRESH"),
                                      ({"MOBSTREAM_PORT": "x"}, "MOBSTREAM_PORT"),
                                      ({"MOBSTREAM_GRID_ORIGIN_LAT": "35"}, "MOBSTREAM_GRID_ORIGIN_LAT")])
def test_bad_settings_name_the_variable(env, name):
    with pytest.raises(ConfigError, match=name):
        DashboardSettings.from_env(env)


def test_split_urls():
    assert split_urls(" a, b c ") == ("a", "b", "c") and split_urls(None) == ()


def test_metrics_sum_over_workers_and_rates():
    a = metrics.add_text(metrics.add_text(metrics.Snapshot(at=0.0), EXPOSITION), EXPOSITION)
    assert (a.pings, a.accepted, a.lag, a.up) == (200, 180, 14, 2)
    assert a.dead == {"late": 8, "bad_json": 12} and a.mae == {"model": 0.4, "persistence": 0.6}
    b = metrics.Snapshot(at=2.0, pings=300, accepted=260, lag=1, close_sum=2.0, close_count=6)
    r = metrics.rates(a, b)
    assert r.pings_per_s == 50 and r.accepted_per_s == 40 and r.close_ms == pytest.approx(500)
    assert metrics.rates(b, a).pings_per_s == 0  # a restarted worker is no negative rate


def test_scrape_reports_dead_endpoints():
    from stream.services import free_port

    snap = metrics.scrape((f"http://127.0.0.1:{free_port()}/metrics",), timeout=0.5)
    assert snap.up == 0 and len(snap.down) == 1


def _grids():
    actual = np.zeros((3, 4, 4), dtype=np.int64)
    actual[0, 1, 2] = 5
    fc = np.full((3, 4, 4), np.nan, dtype=np.float32)
    fc[0, 1, 2] = 3.0
    fc[0, 0, 0] = 1.0
    return actual, fc


def test_map_frames():
    actual, fc = _grids()
    a = flowmap.frame("actual", "occupancy", 7, actual, None, None)
    assert a.slot == 7 and (~a.blank).sum() == 1 and a.scale.log
    f = flowmap.frame("forecast", "occupancy", 7, actual, fc, None)
    assert f.slot == 8 and (~f.blank).sum() == 2 and not f.note
    e = flowmap.frame("error", "occupancy", 7, actual, None, fc)
    assert e.values[1, 2] == -2 and e.values[0, 0] == 1 and not e.scale.log
    none = flowmap.frame("error", "inflow", 7, actual, None, np.full_like(fc, np.nan))
    assert "no forecast" in none.note
    top = flowmap.top_cells(e.values, e.blank)
    assert top.iloc[0].to_dict() == {"x": 3, "y": 2, "cell": 6, "value": -2.0}


def test_image_is_north_up_and_marks_the_cell():
    actual, _ = _grids()
    fr = flowmap.frame("actual", "occupancy", 7, actual, None, None)
    rgb = render.colorize(fr.values, fr.scale, fr.blank)
    assert (rgb[2, 2] != render.BACKGROUND).any() and (rgb[1, 2] == render.BACKGROUND).all()  # y=2 -> row 2 of 4
    big = render.mark_cell(render.upscale(rgb, k=4, every=100), 1, 1, 4)
    assert big.shape == (16, 16, 3) and (big == render.MARK).all(axis=-1).any()
    assert render.png(big)[:8] == b"\x89PNG\r\n\x1a\n"


def test_grid_bounds_cover_100_km():
    from models.grid import GridSpec

    (w, s), (e, n) = render.grid_bounds(GridSpec(35.3, 139.2))
    assert (w, s) == pytest.approx((139.2, 35.3)) and n - s == pytest.approx(100_000 / 111_195, rel=1e-3)


def test_drilldown_errors_only_where_all_exist():
    nan = np.nan
    h = CellHistory(np.arange(4), np.array([[1, 0, 0], [3, 0, 0], [2, 0, 0], [nan] * 3]),
                    np.array([[nan] * 3, [2, 0, 0], [2, 0, 0], [4, 0, 0]]),
                    np.array([[nan] * 3, [1, 0, 0], [3, 0, 0], [2, 0, 0]]))
    assert drilldown.errors_of(h, "occupancy") == (0.5, 1.5, 2)
    df = drilldown.history_frame(h, "occupancy", 0)
    assert set(df.series) == {"actual", "forecast", "persistence"} and len(df[df.series == "forecast"]) == 3
    path = np.array([[4, 0, 0], [5, 0, 0], [nan] * 3, [6, 0, 0]])  # made at slot 2 for slots 3..6; slot 5 missing
    df = drilldown.history_frame(h, "occupancy", 0, path)
    got = df[df.series == "forecast path"]
    assert got.slot.tolist() == [2, 3, 4, 6] and got.value.tolist() == [2, 4, 5, 6]  # from the last actual on
    assert df.time.notna().all() and len(df) == 3 + 3 + 3 + 4


def test_map_frames_per_horizon():
    actual, fc = _grids()
    assert flowmap.frame("forecast", "occupancy", 7, actual, fc, None, horizon=3).slot == 10
    assert flowmap.frame("error", "occupancy", 7, actual, None, fc, horizon=4).slot == 7
    assert [flowmap.horizon_label(h) for h in flowmap.HORIZONS] == ["30 min", "1 h", "1.5 h", "2 h"]


def test_embedding_helpers():
    cells = {"1": {8: 5, 9: 5, 1: 7}, "2": {}}
    assert embeddings.activity(cells, ["1", "2"], end=9).tolist() == [2, 0]
    assert embeddings.last_cells(cells, ["1", "2"]).tolist() == [5, -1]
    grid = embeddings.visit_grid(cells, size=10)
    assert grid.sum() == 3 and grid[0, 5] == 2
    sub, x0, y0 = embeddings.crop(grid, pad=1)
    assert sub.sum() == 3 and x0 >= 1 and y0 >= 1


def test_selected_reads_the_brush():
    import pandas as pd

    df = pd.DataFrame({"uid": ["a", "b"], "pc1": [0.0, 2.0], "pc2": [0.0, 2.0]})

    class Event:
        selection = {"brush": {"pc1": [1.0, 3.0], "pc2": [3.0, 1.0]}}

    assert embeddings.selected(df, Event()) == ["b"] and embeddings.selected(df, None) == []
