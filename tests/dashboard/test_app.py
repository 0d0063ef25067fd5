"""The dashboard page under Streamlit's AppTest, against a real redis-server filled by the stream's writers."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis
from streamlit.testing.v1 import AppTest

from stream.keys import Keys
from stream.services import free_port
from tests.dashboard import fill

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def _env(monkeypatch, url: str, app: str, **extra) -> None:
    for k in ("MOBSTREAM_METRICS_URLS", "MOBSTREAM_GRID_ORIGIN_LAT", "MOBSTREAM_GRID_ORIGIN_LON", "MOBSTREAM_LABELS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MOBSTREAM_REDIS_URL", url)
    monkeypatch.setenv("MOBSTREAM_APP", app)
    for k, v in extra.items():
        monkeypatch.setenv(f"MOBSTREAM_{k.upper()}", str(v))


def _text(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "warning", "error", "success")
    parts = [e.value for kind in kinds for e in getattr(at, kind)]
    parts += [f"{m.label}={m.value}" for m in at.metric]
    return "\n".join(str(p) for p in parts)


def _open(tab: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["tab"] = tab
    return at


def _run(at: AppTest) -> AppTest:
    at.run(timeout=60)
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="module")
def filled(redis_url):
    """One city, one day, forecasts + errors + embeddings: (url, app, last slot)."""
    app = f"d{uuid.uuid4().hex[:8]}"
    made = fill.ingest(redis_url, app, fill.city_frame())
    fill.write_outputs(redis_url, app, "A", [s for _, s in made])
    return redis_url, app, made[-1][1]


def test_map_renders_actuals(filled, monkeypatch):
    url, app, last = filled
    _env(monkeypatch, url, app)
    at = _run(AppTest.from_file(APP, default_timeout=60))
    text = _text(at)
    assert f"Last closed slot={last}" in text
    assert "Actual occupancy" in text and "Sun 2026-01-05" not in text
    assert "Mon 2026-01-05 23:30–00:00 UTC" in text
    assert at.get("image"), "the heatmap image is missing"
    assert not at.error


@pytest.mark.parametrize("view", ["forecast", "error"])
def test_forecast_and_error_views(filled, monkeypatch, view):
    url, app, _ = filled
    _env(monkeypatch, url, app)
    at = _run(AppTest.from_file(APP, default_timeout=60))
    at.radio(key="view").set_value(view)
    _run(at)
    assert f"{view.capitalize()} occupancy" in _text(at)
    assert not at.warning, [w.value for w in at.warning]


def _forecast_view(url: str, app: str, monkeypatch) -> AppTest:
    _env(monkeypatch, url, app)
    at = _run(AppTest.from_file(APP, default_timeout=60))
    at.radio(key="view").set_value("forecast")
    return _run(at)


def test_map_shows_the_newest_published_slot(redis_url, monkeypatch):
    """Right after a slot advance the newest slot is assembled but not yet published: the map stays on the
    newest published slot, says which, and gives no "no forecaster" warning."""
    app = f"p{uuid.uuid4().hex[:8]}"
    slots = [s for _, s in fill.ingest(redis_url, app, fill.city_frame(n_users=40))]
    fill.write_outputs(redis_url, app, "A", slots[:-1])
    last, shown = slots[-1], slots[-2]
    at = _forecast_view(redis_url, app, monkeypatch)
    text = _text(at)
    assert f"Last closed slot={last}" in text and f"map: slot {shown}, the newest published" in text
    assert "made when the newest published slot closed" in text and f"· slot {shown + 1} (day" in text
    assert not at.warning, [w.value for w in at.warning]


def test_no_forecaster_warning_only_when_a_published_slot_has_no_forecasts(redis_url, monkeypatch):
    app = f"n{uuid.uuid4().hex[:8]}"
    slots = [s for _, s in fill.ingest(redis_url, app, fill.city_frame(n_users=40))]
    at = _forecast_view(redis_url, app, monkeypatch)
    assert f"Slot {slots[-1]} has closed; the map appears once the worker has published" in _text(at)
    assert not at.warning
    keys = Keys(app)
    with redis.Redis.from_url(redis_url) as r:  # not the redis_client fixture: it flushes the module's city
        r.zadd(keys.kept("A"), {s: s for s in slots})  # published by a worker without a forecaster
    at = _forecast_view(redis_url, app, monkeypatch)
    assert len(at.warning) == 1 and f"slot {slots[-1]} was published without forecasts" in at.warning[0].value


def test_horizon_selector_moves_the_forecast_map_and_the_error(filled, monkeypatch):
    url, app, last = filled
    _env(monkeypatch, url, app)
    at = _run(AppTest.from_file(APP, default_timeout=60))
    hot = at.session_state["_top_cells"].iloc[0]
    at.session_state["cell"] = (int(hot.x), int(hot.y))  # a cell with forecasts, for the drill-down
    at.session_state["cell_gen"] = 1  # fresh x/y inputs that start at that cell
    at.radio(key="view").set_value("forecast")
    at.radio(key="horizon").set_value(4)
    _run(at)
    text = _text(at)
    assert "Forecast occupancy" in text and "2 h ahead" in text and not at.warning
    assert "Forecast path (made at the last close): +30 min" in text and "+120 min" in text  # the drill-down
    at.radio(key="view").set_value("error")
    _run(at)
    assert "Error occupancy" in _text(at) and not at.warning, [w.value for w in at.warning]


def test_empty_state_before_any_slot_closed(redis_url, monkeypatch):
    _env(monkeypatch, redis_url, f"empty{uuid.uuid4().hex[:6]}")
    at = _run(AppTest.from_file(APP, default_timeout=60))
    assert "No slot has closed yet" in _text(at)
    assert not at.error


def test_redis_down_shows_message_not_traceback(monkeypatch):
    _env(monkeypatch, f"redis://127.0.0.1:{free_port()}/0", "down")
    at = _run(AppTest.from_file(APP, default_timeout=60))
    assert at.error and "Redis is unreachable" in at.error[0].value
    assert "MOBSTREAM_REDIS_URL" in at.error[0].value


def test_bad_setting_is_a_message(monkeypatch, redis_url):
    _env(monkeypatch, redis_url, "x", refresh="fast")
    at = _run(AppTest.from_file(APP, default_timeout=60))
    assert at.error and "MOBSTREAM_REFRESH" in at.error[0].value


def test_drilldown_follows_cell_inputs(filled, monkeypatch):
    url, app, _ = filled
    _env(monkeypatch, url, app)
    at = _run(AppTest.from_file(APP, default_timeout=60))
    hot = at.session_state["_top_cells"].iloc[0]
    at.number_input[0].set_value(int(hot.x))
    _run(at)
    at.number_input[1].set_value(int(hot.y))
    _run(at)
    assert at.session_state["cell"] == (int(hot.x), int(hot.y))
    text = _text(at)
    assert "Forecast MAE=" in text and "Forecast MAE=—" not in text
    charts = at.get("vega_lite_chart")
    assert any(f"Cell ({int(hot.x)}, {int(hot.y)})" in c.proto.spec for c in charts)


def test_embeddings_scatter_and_colors(filled, monkeypatch, tmp_path):
    url, app, _ = filled
    labels = tmp_path / "labels_cityA.csv"
    labels.write_text("uid,home_x,home_y,work_x,work_y,commuter,profile\n"
                      + "".join(f"{u},100,100,101,101,{u % 2},p{u % 3}\n" for u in range(120)))
    _env(monkeypatch, url, app, labels=labels)
    at = _run(_open("Embeddings"))
    assert "Users=120" in _text(at)
    options = at.selectbox(key="emb_color").options
    assert {"slots seen (of 8)", "km from home (labels)", "label: commuter", "label: profile"} <= set(options)
    for choice in ("slots seen (of 8)", "km from home (labels)", "label: profile"):
        at.selectbox(key="emb_color").set_value(choice)
        _run(at)
        assert not at.error, [e.value for e in at.error]


def test_system_panel_without_metrics_urls_and_with_error_history(filled, monkeypatch):
    url, app, _ = filled
    _env(monkeypatch, url, app)
    at = _run(_open("System"))
    text = _text(at)
    assert "MOBSTREAM_METRICS_URLS" in text
    assert "Model MAE (last slot)=" in text and "Persistence MAE (last slot)=" in text


def test_tabs_are_lazy(filled, monkeypatch):
    url, app, _ = filled
    _env(monkeypatch, url, app)
    at = _run(AppTest.from_file(APP, default_timeout=60))
    assert "Users=" not in _text(at) and "Last closed slot=" in _text(at)


def test_lat_lon_map_with_grid_origin(filled, monkeypatch):
    url, app, _ = filled
    _env(monkeypatch, url, app, grid_origin_lat=35.3, grid_origin_lon=139.2)
    at = _run(AppTest.from_file(APP, default_timeout=60))
    at.toggle(key="on_map").set_value(True)
    _run(at)
    decks = at.get("deck_gl_json_chart")
    assert decks and "BitmapLayer" in decks[0].proto.json and "data:image/png;base64," in decks[0].proto.json
    assert '"mapStyle": null' in decks[0].proto.json or "mapStyle" not in decks[0].proto.json
