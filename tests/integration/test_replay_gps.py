"""A GeoLife-shaped raw-GPS trace in every timestamp form, replayed through the real broker, worker and Redis:
each form's flows equal the offline computation (training.readers + models.flows), and the points outside
the grid are the worker's `out_of_grid` dead letters."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from models.flows import flow_counts
from models.slots import SLOTS_PER_DAY
from stream.replay import ReplaySettings, replay
from tests.integration.test_worker_flows import redis_flows
from tests.integration.worker_proc import WorkerProc, wait_assembled
from tests.stream.gps_trace import FORMS, trace, write
from training.readers import ReadSummary, read_all

pytestmark = pytest.mark.integration
CITIES = "ABCDE"  # one per form, each on its own day, so the five replays follow each other in event time


def offline_flows(path) -> tuple[dict, int]:
    """{(slot, cell): (occ, in, out)} from the offline reader (each user's latest point per slot wins, ties
    to the larger cell, as online), and the number of points outside the grid."""
    summary = ReadSummary()
    cols, _ = read_all(path, "gps", strict=False, summary=summary)
    cell = (cols["y"] - 1) * 200 + (cols["x"] - 1)
    latest: dict = {}
    for u, s, t, c in zip(cols["uid"].tolist(), cols["slot"].tolist(), cols["ts"].tolist(), cell.tolist()):
        latest[(u, s)] = max(latest.get((u, s), (-1.0, -1)), (t, c))
    keys = sorted(latest)
    uid = np.array([k[0] for k in keys])
    slot = np.array([k[1] for k in keys])
    c = np.array([latest[k][1] for k in keys])
    fc = flow_counts(uid, slot, c % 200 + 1, c // 200 + 1)
    flows = {(int(s), int(x)): tuple(int(v) for v in k) for s, x, k in zip(fc.slot, fc.cell, fc.counts) if k.any()}
    assert set(summary.bad) <= {"outside_grid:lat,lon"}, summary.bad
    return flows, summary.bad_rows


def dead_letters(w: WorkerProc) -> dict[str, int]:
    return {line.split('"')[1]: int(float(line.rsplit(" ", 1)[1])) for line in w.metrics().splitlines()
            if line.startswith("mobstream_dead_letters_total{")}


def test_gps_in_every_timestamp_form_matches_the_offline_flows(broker, redis_url, make_topic, tmp_path):
    topic = make_topic(partitions=2)
    want, outside = {}, 0
    for day, (form, city) in enumerate(zip(FORMS, CITIES)):
        path = write(tmp_path / f"gps_{form}.csv", trace(n_users=25, day=day), form)
        want[city], n_out = offline_flows(path)
        outside += n_out
        rep = replay(ReplaySettings(path, broker.bootstrap, topic, partitions=2, city=city, progress=False,
                                    close_last=day == len(FORMS) - 1))
        assert rep.bad == 0 and rep.pings > 4000
    app = f"g{uuid.uuid4().hex[:8]}"
    w = WorkerProc(broker.bootstrap, redis_url, topic, app, 2, tmp_path / "worker.log")
    last = len(FORMS) * SLOTS_PER_DAY - 1
    try:
        wait_assembled(redis_url, app, last, w)
        deadline = time.monotonic() + 30  # a batch's dead letters are delivered (and counted) after its flows
        while (dead := dead_letters(w)) != {"out_of_grid": outside} and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        w.stop()
    for city in CITIES:
        got = redis_flows(redis_url, app, city, range(last + 1))
        assert got == want[city] and len(got) > 300, city
    assert outside > 0 and dead == {"out_of_grid": outside}
