"""The data report against numbers computed by hand on a tiny dataset, and the data-report command."""

from __future__ import annotations

import json
import math

import pytest
import typer
from typer.testing import CliRunner

from mobstream.errors import MobstreamError
from training.report import data_report
from training.report_cli import data_report as data_report_command
from training.report_cli import render_markdown, render_text, report_sections

ROWS = """uid,d,t,x,y
1,0,0,1,1
1,0,1,3,1
1,0,2,999,999
1,1,16,1,1
3,0,0,1,x
2,5,20,10,10
2,5,21,10,10
2,5,22,10,14
"""


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "cityB_challengedata.csv"
    p.write_text(ROWS)
    return p


def test_numbers_by_hand(tiny):
    r = data_report(tiny)
    assert (r["format"], r["city"], r["records"], r["masked_records"]) == ("yjmob", "B", 7, 1)
    assert r["masked_share"] == round(1 / 7, 6)
    assert (r["users"], r["days"], r["day_range"], r["user_days"]) == (2, 3, [0, 5], 3)
    # observations per user-day (masked rows are no observation): 2, 1, 3
    assert r["obs_per_user_day"] == {"mean": 2.0, "p10": 1.2, "median": 2.0, "p90": 2.8, "max": 3.0}
    assert r["cells_per_user"] == {"mean": 2.0, "p10": 2.0, "median": 2.0, "p90": 2.0, "max": 2.0}
    rg1, rg2 = math.sqrt(8 / 9) * 0.5, math.sqrt(32 / 9) * 0.5  # population variance of cell x/y, 0.5 km cells
    assert r["radius_of_gyration_km"]["mean"] == pytest.approx((rg1 + rg2) / 2, abs=1e-4)
    assert r["radius_of_gyration_km"]["max"] == pytest.approx(rg2, abs=1e-4)
    assert r["busiest_cells"][:2] == [{"x": 1, "y": 1, "records": 2, "users": 1}, {"x": 10, "y": 10, "records": 2, "users": 1}]
    assert len(r["busiest_cells"]) == 4
    hours = [0] * 24
    hours[0], hours[1], hours[8], hours[10], hours[11] = 2, 1, 1, 2, 1
    assert r["by_hour"] == hours
    assert r["by_weekday"] == {"Mon": 3, "Tue": 1, "Wed": 0, "Thu": 0, "Fri": 0, "Sat": 3, "Sun": 0}
    assert r["reader"]["bad_by_reason"] == {"not_integer:y": 1}
    assert r["reader"]["examples"][0]["line"] == 6


def test_renderings_hold_the_figures(tiny):
    sections = report_sections(data_report(tiny))
    text, md = render_text(sections), render_markdown(sections)
    for out in (text, md):
        assert "not_integer:y" in out and "cityB_challengedata.csv:6: field y: 'x' is not an integer" in out
        assert "radius of gyration (km)" in out and "1 (14.3%)" in out


def test_poi_and_gps_reports(tmp_path):
    poi = tmp_path / "POIdata_cityA.csv"
    poi.write_text("x,y,category,POI_count\n1,1,3,5\n1,1,4,2\n2,2,3,1\n")
    r = data_report(poi)
    assert (r["records"], r["cells"], r["categories"], r["poi_total"]) == (3, 2, 2, 8)
    assert r["busiest_cells"][0] == {"x": 1, "y": 1, "pois": 7, "categories": 2}
    assert r["top_categories"][0] == {"category": 3, "pois": 6, "cells": 2}
    gps = tmp_path / "gps.csv"
    gps.write_text("uid,lat,lon,timestamp\n1,35.31,139.21,2026-01-06T07:10:00Z\n1,0.0,0.0,2026-01-06T07:10:00Z\n")
    r = data_report(gps)
    assert (r["records"], r["by_weekday"]["Tue"], r["by_hour"][7]) == (1, 1, 1)
    assert r["reader"]["bad_by_reason"] == {"outside_grid:lat,lon": 1}


def test_empty_dataset_reports_zeros(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("uid,d,t,x,y\n")
    r = data_report(p)
    assert r["records"] == 0 and r["users"] == 0 and r["obs_per_user_day"]["mean"] is None
    assert "valid records" in render_text(report_sections(r))


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("data-report")(data_report_command)
    app.command("unused")(lambda: None)  # two commands, so typer keeps the subcommand name
    return app


def test_command_writes_json_and_markdown(tiny, tmp_path):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    done = CliRunner().invoke(_app(), ["data-report", str(tiny), "--json", str(out), "--markdown", str(md)])
    assert done.exit_code == 0, done.output
    assert "Busiest cells" in done.output and json.loads(out.read_text())["records"] == 7
    assert md.read_text().startswith("### Dataset")


def test_strict_command_raises_the_clean_error(tiny):
    # mobstream.cli.main prints any MobstreamError as one `error: ...` line with exit status 2
    done = CliRunner().invoke(_app(), ["data-report", str(tiny), "--strict"])
    assert isinstance(done.exception, MobstreamError)
    assert str(done.exception) == f"{tiny}:6: field y: 'x' is not an integer"
