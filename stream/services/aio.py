"""Running an asyncio client call from synchronous code, whether or not an event loop is running."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Awaitable, Callable


def run_sync(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run make() to completion; inside a running loop (async tests, Faust) it runs on a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(make))
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mobstream-sync") as pool:
        return pool.submit(asyncio.run, _await(make)).result()


async def _await(make: Callable[[], Awaitable[Any]]) -> Any:
    return await make()
