"""Wake-ups for waiting agents: Redis pub/sub on one channel per machine.

A BenchmarkJob that is created, challenged or ends publishes "look again" on its machine's
channel once its transaction commits; an agent long-polling on any web process (any machine)
wakes, reads the database once and answers. No waiter polls the database.

Waiting never loses a wake-up: the waiter subscribes and waits for Redis to confirm the
subscription, then reads the database, then waits for a message, then reads once more. A change
committed after the first read publishes after the subscription exists; one committed before
it is seen by the first read.

Two waiters:
- `wait_async`, for the ASGI agent channel: one pub/sub connection per process (the Hub),
  shared by every waiting coroutine of that process; a waiting agent costs a coroutine and an
  asyncio.Event, not a thread or a connection.
- `wait_sync`, for the same endpoints served by the WSGI server: one short-lived pub/sub
  connection per waiting thread (that server's thread count bounds them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import transaction

from marketplace.core.db_pool import in_db_thread

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How a wait ended, for the Agent-Wait response header (operations and tests read it).
FOUND_FIRST, FOUND_EVENT, FOUND_LAST = "initial", "event", "timeout"


def channel_name(machine_id: int) -> str:
    # Pub/sub channels are global to a Redis server, not per database number: the database
    # number in the name keeps two stacks sharing one Redis (tests, staging) apart.
    return f"mkt:{_redis_db()}:agent-wake:{machine_id}"


def _redis_db() -> int:
    from redis.connection import parse_url

    return int(parse_url(settings.REDIS_URL).get("db", 0) or 0)


def _news_states() -> set[str]:
    from marketplace.benchmarks.models import BenchmarkJob

    return {BenchmarkJob.State.CHALLENGED, *BenchmarkJob.FINAL_STATES}


# --- publishing -------------------------------------------------------------------------------


def machine_wake(*, machine_id: int, job_id: int | None = None) -> None:
    """Publishes now. Never raises: a lost wake-up costs the agent at most one wait (it reads
    the database again when the wait ends), a raised one would fail a committed request."""
    try:
        _sync_client().publish(channel_name(machine_id), str(job_id or ""))
    except Exception:  # noqa: BLE001 - Redis down must not fail the job's transition
        logger.warning("agent wake-up for machine %s not published", machine_id, exc_info=True)


def on_job_saved(sender, instance, created: bool, update_fields=None, **kwargs) -> None:
    """post_save on BenchmarkJob: news for a waiting agent is a new job (GET next), an issued
    challenge or a final state (GET challenge). Dispatch and commitment are the agent's own
    doing; nobody waits on them. Published on commit, so the agent's read sees the row."""
    if not created and (
        instance.state not in _news_states()
        or (update_fields is not None and "state" not in update_fields)
    ):
        return
    machine_id, job_id = instance.machine_id, instance.pk
    transaction.on_commit(lambda: machine_wake(machine_id=machine_id, job_id=job_id))


_client = None


def _sync_client():
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5
        )
    return _client


# --- how long a wait is held ------------------------------------------------------------------

# A fleet that connects at once (a deploy, a restart of the channel) would otherwise poll in
# waves: every 25-second wait ends at the same moment, thousands of reads arrive together, and a
# new job's wake-up queues behind them (measured at 5,000 agents: dispatch p95 2.8 s, every slow
# job in a wave). So a long wait ends at its machine's own moment: the first instant at least
# 70% of the asked wait from now that falls on the machine's phase of a grid of 30% of the wait.
# Phases follow the golden-ratio sequence of machine ids, evenly spread over the grid, so after
# one round a fleet's polls arrive evenly however it connected, and the clock (not a random
# draw) makes every web process agree. "Up to `wait` seconds" allows it. Short waits (tests,
# impatient agents) are held exactly.
SPREAD_FROM_SECONDS = 5.0
_HELD_AT_LEAST = 0.7
_GOLDEN = (math.sqrt(5) - 1) / 2


def held_seconds(machine_id: int, wait: float, now: float | None = None) -> float:
    """How long a wait of `wait` seconds asked now by this machine is held: in [0.7, 1) of
    it, ending on the machine's phase; exactly `wait` below SPREAD_FROM_SECONDS."""
    if wait < SPREAD_FROM_SECONDS:
        return wait
    now = time.time() if now is None else now
    grid = wait * (1 - _HELD_AT_LEAST)
    phase = (machine_id * _GOLDEN) % 1.0 * grid
    earliest = now + wait * _HELD_AT_LEAST
    end = phase + math.ceil((earliest - phase) / grid) * grid
    return min(wait, max(wait * _HELD_AT_LEAST, end - now))  # float rounding only


# --- waiting, sync (WSGI) ---------------------------------------------------------------------


def wait_sync(machine_id: int, wait: float, check: Callable[[], T | None]) -> tuple[T | None, str]:
    """check() now, then again when the machine's channel speaks or the wait (held_seconds)
    runs out."""
    if wait <= 0:
        return check(), FOUND_FIRST
    wait = held_seconds(machine_id, wait)
    pubsub = _sync_client().pubsub(ignore_subscribe_messages=False)
    try:
        pubsub.subscribe(channel_name(machine_id))
        give_up = time.monotonic() + wait
        confirmed = False
        while not confirmed and time.monotonic() < give_up:
            message = pubsub.get_message(timeout=give_up - time.monotonic())
            confirmed = bool(message and message["type"] == "subscribe")
        found = check()
        if found is not None:
            return found, FOUND_FIRST
        while (remaining := give_up - time.monotonic()) > 0:
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
            if message and message["type"] == "message":
                found = check()
                if found is not None:
                    return found, FOUND_EVENT
        return check(), FOUND_LAST
    finally:
        pubsub.close()


# --- waiting, async (ASGI) --------------------------------------------------------------------

# Database work runs in the channel's bounded pool (marketplace.core.db_pool.in_db_thread,
# imported above; the views of other apps use it from there too).


class Hub:
    """One Redis pub/sub connection per process and event loop, fanning messages out to the
    local waiters of each machine's channel."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}
        self._confirmed: dict[str, asyncio.Future] = {}
        self._pubsub = None
        self._reader: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        # Bumped each time the connection is lost: a wait that spanned a loss may have missed
        # its message, and reads once more at its end.
        self.losses = 0

    async def _start(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2, health_check_interval=15
        )
        self._pubsub = client.pubsub()
        # A pub/sub connection must exist before listen() runs: subscribe to a channel nobody
        # publishes on, which also keeps the connection subscribed while no agent waits.
        await self._pubsub.subscribe(f"mkt:{_redis_db()}:agent-wake:hub")
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=30)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reconnects below; waiters re-read the database
                logger.warning("agent wake-up connection lost; reconnecting", exc_info=True)
                self.losses += 1
                self._wake_all()
                await asyncio.sleep(1)
                with contextlib.suppress(Exception):
                    # redis-py reconnects and re-subscribes every channel on the next command.
                    await self._pubsub.ping()
                continue
            if message is None:
                continue
            channel = message["channel"].decode()
            if message["type"] == "subscribe":
                future = self._confirmed.get(channel)
                if future is not None and not future.done():
                    future.set_result(True)
            elif message["type"] == "message":
                for event in self._events.get(channel, ()):
                    event.set()

    def _wake_all(self) -> None:
        # Messages may have been lost with the connection: every waiter reads once more.
        for events in self._events.values():
            for event in events:
                event.set()

    @contextlib.asynccontextmanager
    async def listening(self, machine_id: int):
        """Yields (the waiter's event, whether Redis confirmed the subscription)."""
        channel = channel_name(machine_id)
        event = asyncio.Event()
        async with self._lock:
            if self._pubsub is None:
                await self._start()
            waiters = self._events.setdefault(channel, set())
            first = not waiters
            waiters.add(event)
            if first:
                self._confirmed[channel] = asyncio.get_running_loop().create_future()
                await self._pubsub.subscribe(channel)
            confirmed = self._confirmed[channel]
        try:
            # Until Redis confirms, a publish could miss us: the first read waits for it. A Redis
            # too slow to confirm only costs this wait its wake-up (the last read still runs).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(confirmed), timeout=5)
            yield event, confirmed.done()
        finally:
            async with self._lock:
                waiters = self._events.get(channel, set())
                waiters.discard(event)
                if not waiters:
                    self._events.pop(channel, None)
                    self._confirmed.pop(channel, None)
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(channel)


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def hub() -> Hub:
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = Hub()
    return _hubs[loop]


async def wait_async(
    machine_id: int, wait: float, check: Callable[[], T | None]
) -> tuple[T | None, str]:
    """check() (run in the database pool) now, then again each time the machine's channel
    speaks, until it finds something or the wait (held_seconds) runs out. Once more at the end
    only if a message could have been missed (the subscription was never confirmed, or the
    connection was lost meanwhile): otherwise every change since the first read has woken this
    wait, and a read at its end would find nothing (it was a third of a waiting fleet's queries)."""
    if wait <= 0:
        return await in_db_thread(check), FOUND_FIRST
    wait = held_seconds(machine_id, wait)
    give_up = time.monotonic() + wait
    the_hub = hub()
    losses = the_hub.losses
    async with the_hub.listening(machine_id) as (event, confirmed):
        found = await in_db_thread(check)
        if found is not None:
            return found, FOUND_FIRST
        while (remaining := give_up - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(event.wait(), timeout=remaining)
            except TimeoutError:
                break
            event.clear()
            found = await in_db_thread(check)
            if found is not None:
                return found, FOUND_EVENT
    if confirmed and the_hub.losses == losses:
        return None, FOUND_LAST
    return await in_db_thread(check), FOUND_LAST
