"""Phase-2 outputs on slot close: flow forecasts and user embeddings (off without a checkpoint)."""

from __future__ import annotations

import logging

from stream import metrics as m
from stream.settings import WorkerSettings

log = logging.getLogger(__name__)


class Outputs:
    """Hooks the Processor calls when a slot closes (per partition) and is assembled (per city)."""

    def __init__(self, s: WorkerSettings) -> None:
        self.s = s
        self.redis = None
        self.app = None

    def describe(self) -> str:
        parts = []
        for name, path in (("forecasts", self.s.forecaster), ("embeddings", self.s.embedder)):
            parts.append(f"{name} from {path}" if path else f"{name} OFF (no checkpoint set)")
        return ", ".join(parts)

    def attach(self, redis, app) -> None:
        self.redis, self.app = redis, app
        m.MODEL_LOADED.labels("forecaster").set(0)
        m.MODEL_LOADED.labels("embedder").set(0)

    async def on_closed(self, part, city, slot, uids, cells) -> None:
        return None

    async def on_assembled(self, made) -> None:
        return None
