"""The agent channel's database pool: database work of the async views (marketplace/asgi.py, the
agent long polls and heartbeats of several apps) runs here, a bounded pool, so that thousands
of waiting agents use a handful of threads and database connections, never one each."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections

T = TypeVar("T")

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


class _Pool:
    """A fixed set of daemon threads taking calls from one queue. Lighter than
    ThreadPoolExecutor under asyncio: each call is a queue entry and one call_soon_threadsafe,
    with no concurrent.futures.Future (its Condition and lock) wrapped in an asyncio future;
    that wrapping was a tenth of a channel worker's CPU at 5,000 agents."""

    def __init__(self, size: int) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(size):
            threading.Thread(target=self._work, name=f"agent-db-{i}", daemon=True).start()

    def _work(self) -> None:
        while True:
            loop, future, fn, args, kwargs = self._calls.get()
            try:
                outcome = (_db_call(fn, *args, **kwargs), None)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                outcome = (None, exc)
            # A loop closed meanwhile (its server is shutting down) wants no answer; the
            # thread must live on for the other loops of this process.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, *outcome)

    def call(self, fn, args, kwargs) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls.put((loop, future, fn, args, kwargs))
        return future


def _settle(future: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if future.cancelled():  # the request went away meanwhile: nobody wants the answer
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


_db_pool: _Pool | None = None
_db_pool_lock = threading.Lock()


async def in_db_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs) in the pool, awaited without blocking the event loop."""
    global _db_pool
    if _db_pool is None:
        with _db_pool_lock:
            if _db_pool is None:
                _db_pool = _Pool(settings.AGENT_CHANNEL_DB_THREADS)
    return await _db_pool.call(fn, args, kwargs)
