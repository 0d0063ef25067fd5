"""The `mobstream data-report` command: settings, and the report as a terminal table, Markdown or JSON."""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass
from pathlib import Path

import typer

from mobstream.settings import env, opt

Section = tuple[str, list[str], list[tuple]]  # title, column names, rows


@dataclass(frozen=True)
class ReportSettings:
    path: Path
    format: str
    strict: bool
    city: str | None
    json_out: Path | None
    markdown_out: Path | None
    grid_lat: float
    grid_lon: float
    memory_limit: str


def data_report(
    path: Path = typer.Argument(..., help="A dataset file: YJMob/HuMob records, POI counts or raw GPS; CSV, CSV.gz or Parquet."),
    format: str = opt("auto", "report_format", "auto, yjmob, poi or gps (auto reads the header)."),
    strict: bool = typer.Option(
        False, "--strict/--lenient", help="Stop at the first bad row, or count bad rows by reason and go on.",
        envvar=env("report_strict"), show_envvar=True,
    ),
    city: str = opt(None, "report_city", "City letter; default from the file name (cityB_... -> B), else A."),
    json: Path = opt(None, "report_json", "Also write the report as JSON to this file."),
    markdown: Path = opt(None, "report_markdown", "Also write the report as Markdown to this file."),
    grid_lat: float = opt(35.30, "grid_origin_lat", "GPS only: latitude of the grid's south-west corner."),
    grid_lon: float = opt(139.20, "grid_origin_lon", "GPS only: longitude of the grid's south-west corner."),
    memory_limit: str = opt("2GB", "report_memory", "DuckDB memory limit; larger data spills to a temporary directory."),
) -> None:
    """Summarise a dataset: users, days, sampling, mobility, busiest cells, daily and weekly rhythm, bad rows."""
    s = ReportSettings(path, format, strict, city, json, markdown, grid_lat, grid_lon, memory_limit)
    from models.grid import GridSpec
    from training.report import data_report as build

    report = build(s.path, s.format, strict=s.strict, city=s.city, grid=GridSpec(s.grid_lat, s.grid_lon), memory_limit=s.memory_limit)
    sections = report_sections(report)
    typer.echo(render_text(sections))
    if s.json_out:
        _write(s.json_out, jsonlib.dumps(report, indent=2) + "\n", "--json")
    if s.markdown_out:
        _write(s.markdown_out, render_markdown(sections), "--markdown")


def _write(path: Path, text: str, flag: str) -> None:
    from training.exceptions import TrainingError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise TrainingError(f"{flag} {path}: cannot write: {exc.strerror or exc}") from exc


def _dist_rows(report: dict, keys: list[tuple[str, str]]) -> list[tuple]:
    return [(label, *(_num(report[k][q]) for q in ("mean", "p10", "median", "p90", "max"))) for k, label in keys]


def _num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.2f}"
    return f"{int(v):,}"


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def _bars(labels: list[str], counts: list[int], width: int = 30) -> list[tuple]:
    top, total = max(counts, default=0), sum(counts)
    return [(k, _num(n), _share(n, total), "#" * round(width * n / top) if top else "") for k, n in zip(labels, counts)]


def report_sections(r: dict) -> list[Section]:
    """The report as titled tables, shared by the terminal and Markdown renderings."""
    rd = r["reader"]
    head = [("file", r["file"]), ("format", f"{r['format']} ({r['container']}), city {r['city']}"),
            ("rows read", _num(rd["rows"])), ("valid records", _num(rd["good"])), ("bad rows", _num(rd["bad_rows"]))]
    if rd["blank_lines"]:
        head.append(("blank lines (skipped)", _num(rd["blank_lines"])))
    bad = [(k, _num(n), _share(n, rd["rows"])) for k, n in rd["bad_by_reason"].items()]
    examples = [(e["message"],) for e in rd["examples"]]
    if r["format"] == "poi":
        head += [("cells with POIs", _num(r["cells"])), ("categories", _num(r["categories"])), ("POIs", _num(r["poi_total"]))]
        sections = [
            ("Dataset", ["", ""], head),
            ("Cells with most POIs", ["x", "y", "POIs", "categories"], [(c["x"], c["y"], _num(c["pois"]), c["categories"]) for c in r["busiest_cells"]]),
            ("Top categories", ["category", "POIs", "cells"], [(c["category"], _num(c["pois"]), _num(c["cells"])) for c in r["top_categories"]]),
        ]
    else:
        total = r["records"]
        head += [("masked records", f"{_num(r['masked_records'])} ({_share(r['masked_records'], total)})"),
                 ("users", _num(r["users"])), ("days", f"{r['days']} (d {r['day_range'][0]}..{r['day_range'][1]})"),
                 ("user-days observed", _num(r["user_days"]))]
        dists = [("obs_per_user_day", "observations per user-day"), ("cells_per_user", "distinct cells per user"),
                 ("radius_of_gyration_km", "radius of gyration (km)")]
        sections = [
            ("Dataset", ["", ""], head),
            ("Per user", ["", "mean", "p10", "median", "p90", "max"], _dist_rows(r, dists)),
            ("Busiest cells (observations)", ["x", "y", "records", "users"], [(c["x"], c["y"], _num(c["records"]), _num(c["users"])) for c in r["busiest_cells"]]),
            ("Records by hour of day", ["hour", "records", "share", ""], _bars([f"{h:02d}" for h in range(24)], r["by_hour"])),
            ("Records by weekday (d % 7, 0 = Mon)", ["day", "records", "share", ""], _bars(list(r["by_weekday"]), list(r["by_weekday"].values()))),
        ]
    sections.append(("Bad rows by reason", ["reason", "rows", "share of rows"], bad or [("none", "0", "0.0%")]))
    if examples:
        sections.append(("First bad rows", ["where and why"], examples))
    return sections


def render_text(sections: list[Section]) -> str:
    out = []
    for title, cols, rows in sections:
        out.append(f"\n{title}\n{'-' * len(title)}")
        table = ([cols] if any(cols) else []) + [[str(v) for v in row] for row in rows]
        widths = [max(len(str(r[i])) for r in table) for i in range(len(table[0]))] if table else []
        for row in table:
            cells = [str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths))]
            out.append("  ".join(cells).rstrip())
    return "\n".join(out).lstrip("\n") + "\n"


def render_markdown(sections: list[Section]) -> str:
    out = []
    for title, cols, rows in sections:
        head = [c or " " for c in cols]
        out += [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)
