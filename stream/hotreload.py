"""Model hot reload: a checkpoint path watched by mtime, loaded at start and reloaded without a restart."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

from stream import metrics as m
from stream.exceptions import StreamError

log = logging.getLogger(__name__)


class CheckpointSettingError(StreamError):
    """A --forecaster/--embedder checkpoint exists but does not load (truncated, wrong kind, ...)."""


class Watched:
    """A model loaded from a file and reloaded when the file's mtime changes (checked every `poll` s)."""

    def __init__(self, name: str, path, loader: Callable, poll: float, clock: Callable[[], float] = time.monotonic):
        self.name, self.path, self.loader, self.poll, self.clock = name, path, loader, poll, clock
        self.model, self.mtime, self.checked = None, None, -float("inf")
        self.background = self.missing = False

    def check(self) -> None:
        """At start: load the checkpoint now if the file is there, raising a clean error naming the file and
        the setting if it does not load (a missing file stays watched: the output starts when it appears)."""
        if self.path is None or not os.path.exists(self.path):
            return
        try:
            mtime = os.stat(self.path).st_mtime_ns
            self.model = self.loader(self.path)
        except Exception as exc:  # any loader failure: torch, pickle and format errors alike
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointSettingError(f"setting {self.name} (MOBSTREAM_{self.name.upper()}): cannot load "
                                         f"{self.path}: {first}") from exc
        self.mtime, self.checked = mtime, self.clock()
        log.info("%s: loaded %s version %s", self.name, self.path, self.model.version)
        m.MODEL_LOADED.labels(self.name).set(1)

    def get(self):
        """The current model; looks at the file every `poll` s, unless `background` (a timer calls `refresh`)."""
        if self.path is None:
            return None
        now = self.clock()
        if self.background or now - self.checked < self.poll:
            return self.model
        self.checked = now
        if (mtime := self._changed()) is not None:
            self._load(mtime)
        return self.model

    async def refresh(self) -> None:
        """Look at the file now and load a changed one in a thread: loading takes 0.03-0.13 s (a flow
        checkpoint rebuilds its cell features), which on the loop would pause a `--role all` worker's ingest."""
        if self.path is not None and (mtime := self._changed()) is not None:
            await asyncio.to_thread(self._load, mtime)

    def _changed(self) -> int | None:
        """The file's mtime if it changed since the last load attempt; None if not, or if it is missing."""
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            if self.model is None and not self.missing:  # once, not at every look
                log.warning("%s: checkpoint %s not found; %s off until it appears", self.name, self.path, self.name)
            self.missing = True
            return None
        self.missing = False
        return mtime if mtime != self.mtime else None

    def _load(self, mtime: int) -> None:
        try:
            self.model = self.loader(self.path)  # one reference swap: readers on the loop see old or new
            log.info("%s: loaded %s version %s", self.name, self.path, self.model.version)
            m.MODEL_LOADED.labels(self.name).set(1)
        except Exception as exc:  # a bad checkpoint must not stop the windows
            log.error("%s: cannot load %s (%s); keeping %s", self.name, self.path, exc,
                      "the previous model" if self.model else "it off")
        self.mtime = mtime
