"""The agent channel's database pool: database work of the async views (marketplace/asgi.py, the
agent long polls and heartbeats of several apps) runs here, a bounded pool, so that thousands
of waiting agents use a handful of threads and database connections, never one each."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections

T = TypeVar("T")

_db_pool: ThreadPoolExecutor | None = None


# How often a pool thread treats a call as a request boundary (CONN_MAX_AGE, CONN_HEALTH_CHECKS).
# Django's boundary makes the next query of every request pay a health check (SELECT 1): with
# thousands of agents that was one extra round trip per long-poll read, 16% of the pool's time
# at 5,000 agents. A broken connection is still dropped at once: a call that raises ends with a
# boundary, so the next call reconnects.
BOUNDARY_SECONDS = 1.0

_thread_state = threading.local()


def _boundary() -> None:
    close_old_connections()
    _thread_state.next_boundary = time.monotonic() + BOUNDARY_SECONDS


def _db_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    if time.monotonic() >= getattr(_thread_state, "next_boundary", 0.0):
        _boundary()
    try:
        return fn(*args, **kwargs)
    except BaseException:
        _boundary()
        raise


async def in_db_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs) in the pool, awaited without blocking the event loop."""
    global _db_pool
    if _db_pool is None:
        _db_pool = ThreadPoolExecutor(
            max_workers=settings.AGENT_CHANNEL_DB_THREADS, thread_name_prefix="agent-db"
        )
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_db_pool, lambda: _db_call(fn, *args, **kwargs))
