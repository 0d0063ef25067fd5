"""How the window store calls its Lua scripts: plain EVALSHA (in pipelines, or packed in C for big calls),
reloading every script and calling again when Redis lost them (a restart, a flush, a new cluster node)."""

from __future__ import annotations

import hashlib

from redis.exceptions import NoScriptError

from stream.windows import lua

SOURCES = {"COMMIT": lua.COMMIT, "MARK_CLOSED": lua.MARK_CLOSED, "ASSEMBLE": lua.ASSEMBLE}


class Scripts:
    """The store's scripts on one client (one redis-server or a cluster: keys in KEYS route each call)."""

    def __init__(self, client) -> None:
        self.r = client
        self.sha = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in SOURCES.items()}

    def queue(self, pipe, name: str, keys: list, args: list) -> None:
        # Plain EVALSHA: redis-py's Script objects send SCRIPT EXISTS before every pipeline (a round trip).
        pipe.execute_command("EVALSHA", self.sha[name], len(keys), *keys, *args)

    async def call(self, name: str, keys: list, args: list):
        """One script call packed in C (a slot's ASSEMBLE carries thousands of arguments: redis-py's packing in
        Python cost more than Redis running it)."""
        from stream.redis_client import execute_packed

        for attempt in (0, 1):
            try:
                return (await execute_packed(self.r, [("EVALSHA", self.sha[name], len(keys), *keys, *args)]))[0]
            except NoScriptError:
                if attempt:
                    raise
            await self._load()

    async def pipeline(self, fill) -> list:
        """One pipeline built by `fill(pipe)`, run again after a reload if Redis lost the scripts (every script
        is idempotent or refuses a repeat, so the rerun leaves the same state)."""
        for attempt in (0, 1):
            async with self.r.pipeline(transaction=False) as pipe:
                fill(pipe)
                try:
                    return await pipe.execute()
                except NoScriptError:
                    if attempt:
                        raise
            await self._load()

    async def _load(self) -> None:
        for src in SOURCES.values():
            await self.r.script_load(src)
