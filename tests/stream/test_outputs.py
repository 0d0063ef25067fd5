"""Checkpoint watching: a model file is loaded when it appears, reloaded when it changes, kept when a new one is bad."""

from __future__ import annotations

import os
from types import SimpleNamespace

from stream.hotreload import Watched


def test_watched_reloads_on_mtime_and_survives_a_bad_file(tmp_path):
    path = tmp_path / "m.pt"
    now = [0.0]

    def loader(p):
        text = p.read_text()
        if text == "bad":
            raise ValueError("corrupt")
        return SimpleNamespace(version=text)

    w = Watched("forecaster", path, loader, poll=5.0, clock=lambda: now[0])
    assert w.get() is None  # no file yet: off
    path.write_text("v1")
    assert w.get() is None  # not re-checked before the poll interval
    now[0] = 6.0
    assert w.get().version == "v1"
    path.write_text("bad")
    os.utime(path, ns=(1, 10**18))
    now[0] = 12.0
    assert w.get().version == "v1"  # a bad new checkpoint keeps the previous model
    path.write_text("v2")
    os.utime(path, ns=(1, 2 * 10**18))
    now[0] = 18.0
    assert w.get().version == "v2"


async def test_background_refresh_loads_in_a_thread_and_get_only_reads(tmp_path, caplog):
    import threading

    path = tmp_path / "m.pt"
    loaded_on = []

    def loader(p):
        loaded_on.append(threading.current_thread().name)
        return SimpleNamespace(version=p.read_text())

    w = Watched("embedder", path, loader, poll=0.0)
    w.background = True
    await w.refresh()
    await w.refresh()
    assert w.get() is None and caplog.text.count("not found") == 1  # said once while it stays missing
    path.write_text("v1")
    assert w.get() is None  # get never looks at the file in the background mode
    await w.refresh()
    assert w.get().version == "v1" and loaded_on and loaded_on[0] != threading.main_thread().name
    await w.refresh()
    assert len(loaded_on) == 1  # unchanged file: not loaded again


def test_no_path_means_off():
    assert Watched("embedder", None, lambda p: 1, poll=1.0).get() is None
