"""The agent channel's database pool: database work of the async views (marketplace/asgi.py, the
agent long polls and heartbeats of several apps) runs here, a bounded pool, so that thousands
of waiting agents use a handful of threads and database connections, never one each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections

T = TypeVar("T")

_db_pool: ThreadPoolExecutor | None = None


def _db_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    # A request boundary for the pool thread's connection: drop it when obsolete or broken
    # (CONN_MAX_AGE, CONN_HEALTH_CHECKS), exactly as Django does around a WSGI request.
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


async def in_db_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs) in the pool, awaited without blocking the event loop."""
    global _db_pool
    if _db_pool is None:
        _db_pool = ThreadPoolExecutor(
            max_workers=settings.AGENT_CHANNEL_DB_THREADS, thread_name_prefix="agent-db"
        )
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_db_pool, lambda: _db_call(fn, *args, **kwargs))
