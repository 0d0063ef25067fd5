"""Replay of raw GPS: every timestamp form reads alike, and bad rows are refused (or skipped and counted)
before anything is sent, each named by file, line and field in one line."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from models.slots import DEFAULT_ORIGIN
from stream.replay import ReplaySettings, replay
from stream.replay_source import ReplayError, read
from tests.stream.gps_trace import FORMS, trace, write
from training.readers.formats import EPOCH_MS_FROM, epoch_seconds


def rows(path, **kw):
    total, chunks, bad = read(path, **kw)
    cols = {"uid": [], "ts": [], "lat": [], "lon": [], "slot": []}
    for ch in chunks:
        for k, v in zip(cols, (ch.uid, ch.ts, ch.a, ch.b, ch.slot)):
            cols[k].append(v)
    return total, {k: np.concatenate(v) for k, v in cols.items()}, bad


def test_every_timestamp_form_reads_the_same_rows(tmp_path):
    df = trace(n_users=12)
    want = df.sort_values(["ts", "uid"], kind="stable")
    for form in FORMS:
        total, got, bad = rows(write(tmp_path / f"{form}.csv", df, form))
        assert total == len(df) and bad == 0, form
        assert np.array_equal(np.round(got["ts"] * 1000), np.round(want.ts.to_numpy() * 1000)), form
        assert np.array_equal(got["uid"], want.uid.to_numpy()) and np.array_equal(got["lat"], want.lat.to_numpy())
        assert got["slot"].min() >= 0 and got["slot"].max() <= 47


def test_epoch_milliseconds_from_1e11():
    got = epoch_seconds(pa.array([str(EPOCH_MS_FROM - 1), str(EPOCH_MS_FROM), "1767225600000", "1767225600"]))
    assert got.tolist() == [EPOCH_MS_FROM - 1, EPOCH_MS_FROM / 1000, 1767225600.0, 1767225600.0]


def bad_file(tmp_path):
    df = trace(n_users=3)
    path = write(tmp_path / "gps.csv", df, "iso_z")
    lines = path.read_text().splitlines()
    lines[5] = "1,35.6,139.7,1970-01-01T00:00:03Z"  # a bad unit conversion: before the origin
    lines.insert(9, "2,35.6,139.7,2026-13-45T00:00:00Z")  # not a time at all
    path.write_text("\n".join(lines) + "\n")
    return path, len(df)


def test_bad_rows_refuse_the_file_before_anything_is_sent(tmp_path):
    path, _ = bad_file(tmp_path)
    # No broker at this address: the error must come from reading, before any connection.
    with pytest.raises(ReplayError) as err:
        replay(ReplaySettings(path, "127.0.0.1:1", progress=False))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:6: field timestamp: '1970-01-01T00:00:03Z' is before the time origin")
    assert "2 bad rows: bad_timestamp:timestamp 1, before_origin:timestamp 1" in msg and "nothing was sent" in msg


def test_skip_bad_rows_counts_them(tmp_path):
    path, n = bad_file(tmp_path)
    total, got, bad = rows(path, skip_bad=True)
    assert bad == 2 and total == n - 1 and got["ts"].min() >= DEFAULT_ORIGIN  # line 6 replaced a good row


def test_a_bad_yjmob_row_refuses_the_file_in_one_line(tmp_path):
    path = tmp_path / "cityA.csv"
    path.write_text("uid,d,t,x,y\n1,0,0,5,5\n2,0,0,999,999\n3,0,48,5,5\n4,0,1,abc,5\n")
    with pytest.raises(ReplayError) as err:
        read(path)
    assert str(err.value).startswith(f"{path}:4: field t: 48 is outside 0..47 (2 bad rows: not_integer:x 1, "
                                      "out_of_range:t 1); nothing was sent")
    total, chunks, bad = read(path, skip_bad=True)
    got = list(chunks)
    assert (total, bad) == (2, 2) and got[0].uid.tolist() == [1] and got[0].masked == 1
