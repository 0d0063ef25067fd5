"""How the window store calls its Lua scripts: plain EVALSHA (in pipelines, or packed in C for big calls),
reloading every script and calling again when Redis lost them (a restart, a flush, a new cluster node)."""

from __future__ import annotations

import hashlib

from redis.exceptions import NoScriptError

from stream.redis_client import Packed, execute_packed, pack
from stream.windows import lua

SOURCES = {"COMMIT": lua.COMMIT, "MARK_CLOSED": lua.MARK_CLOSED, "ASSEMBLE": lua.ASSEMBLE}


class Scripts:
    """Scripts (the store's by default) on one client (one redis-server or a cluster: keys in KEYS route each
    call)."""

    def __init__(self, client, sources: dict[str, str] = SOURCES) -> None:
        self.r, self.sources = client, sources
        self.sha = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in sources.items()}

    def command(self, name: str, keys: list, args: list) -> tuple:
        # Plain EVALSHA: redis-py's Script objects send SCRIPT EXISTS before every pipeline (a round trip).
        return ("EVALSHA", self.sha[name], len(keys), *keys, *args)

    def queue(self, pipe, name: str, keys: list, args: list) -> None:
        pipe.execute_command(*self.command(name, keys, args))

    async def call(self, name: str, keys: list, args: list):
        """One script call packed in C (a slot's ASSEMBLE carries thousands of arguments: redis-py's packing in
        Python cost more than Redis running it)."""
        return (await self.run(pack([self.command(name, keys, args)])))[0]

    async def run(self, packed: Packed) -> list:
        """Script calls packed in advance (`command` + stream.redis_client.pack, e.g. in a thread); run again
        after a reload if Redis lost the scripts (every script here is idempotent)."""
        for attempt in (0, 1):
            try:
                return await execute_packed(self.r, packed)
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
        for src in self.sources.values():
            await self.r.script_load(src)
