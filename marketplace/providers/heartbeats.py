"""Coalesced heartbeats: a machine's last-seen time lives in one Redis hash, written by every
heartbeat, and reaches Machine.last_heartbeat_at in bulk when beat flushes it.

Database writes then follow the flush interval, not the number of agents times their heartbeat
rate. Readers of Machine.last_heartbeat_at stay correct because
- the flush runs every HEARTBEAT_FLUSH_SECONDS, a small fraction of HEARTBEAT_TIMEOUT_SECONDS,
  and the expiry sweep flushes first, so the database lags by seconds against a 90 s timeout;
- the one decision with consequences, taking a machine offline (machine_mark_offline), reads
  this hash under the machine's row lock before it decides;
- the machine API shows the later of the two (machines_last_seen_overlay).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, DateTimeField, F, Q, Value, When
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

KEY = "mkt:machine-last-seen"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TOUCH_EVERY = timedelta(seconds=60)

# Deletes each flushed field only if no newer heartbeat replaced it meanwhile.
_DELETE_IF_UNCHANGED = """
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return removed
"""

_client = None


def _redis():
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5
        )
    return _client


def heartbeat_record(*, machine_id: int, at: datetime) -> None:
    _redis().hset(KEY, str(machine_id), repr(at.timestamp()))


def _parse(raw: bytes | None) -> datetime | None:
    return None if raw is None else datetime.fromtimestamp(float(raw), tz=UTC)


def machines_last_seen(*, machine_ids: Iterable[int]) -> dict[int, datetime]:
    """Heartbeats not yet flushed, by machine."""
    ids = [int(pk) for pk in machine_ids]
    if not ids:
        return {}
    raws = _redis().hmget(KEY, [str(pk) for pk in ids])
    return {pk: _parse(raw) for pk, raw in zip(ids, raws, strict=True) if raw is not None}


def machines_last_seen_overlay(machines: Iterable) -> None:
    """Sets each machine's last_heartbeat_at to the later of the database's and Redis's, for
    display: the row lags by up to one flush interval."""
    machines = list(machines)
    seen = machines_last_seen(machine_ids=[m.pk for m in machines])
    for machine in machines:
        at = seen.get(machine.pk)
        if at is not None and (machine.last_heartbeat_at is None or at > machine.last_heartbeat_at):
            machine.last_heartbeat_at = at


def heartbeats_flush(*, batch_size: int | None = None) -> int:
    """Beat: writes the buffered last-seen times, one UPDATE per batch of machines (and one for
    their agent credentials' last use, which heartbeats stand for on the agent channel). A time
    never moves backwards. Returns the number of machines flushed."""
    from django.db import connection

    client = _redis()
    raw = client.hgetall(KEY)
    entries = sorted((int(k), v) for k, v in raw.items())
    write, default_size = _FLUSH_WRITERS.get(connection.vendor, _FLUSH_WRITER_DEFAULT)
    size = batch_size or default_size
    for start in range(0, len(entries), size):
        batch = entries[start : start + size]
        with transaction.atomic():
            write(
                [(pk, _parse(v)) for pk, v in batch], touched_before=timezone.now() - _TOUCH_EVERY
            )
        args = [part for pk, v in batch for part in (str(pk), v)]
        client.eval(_DELETE_IF_UNCHANGED, 1, KEY, *args)
    return len(entries)


def _write_batch_orm(batch: list[tuple[int, datetime]], *, touched_before: datetime) -> None:
    from marketplace.providers.models import AgentCredential, Machine

    ids = [pk for pk, _ in batch]
    latest = Case(*[When(pk=pk, then=Value(at)) for pk, at in batch], output_field=DateTimeField())
    Machine.objects.filter(pk__in=ids).update(
        last_heartbeat_at=Greatest(Coalesce(F("last_heartbeat_at"), Value(_EPOCH)), latest)
    )
    used = Case(
        *[When(machine_id=pk, then=Value(at)) for pk, at in batch], output_field=DateTimeField()
    )
    # At most once a minute per credential, as last_used_touch records a request's use.
    AgentCredential.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=touched_before),
        machine_id__in=ids,
        revoked_at__isnull=True,
    ).update(last_used_at=Greatest(Coalesce(F("last_used_at"), Value(_EPOCH)), used))


def _write_batch_postgresql(batch: list[tuple[int, datetime]], *, touched_before: datetime) -> None:
    """The same two UPDATEs as _write_batch_orm, each with the batch as two arrays."""
    from django.db import connection

    from marketplace.providers.models import AgentCredential, Machine

    ids = [pk for pk, _ in batch]
    seen = [at for _, at in batch]
    machines, credentials = Machine._meta.db_table, AgentCredential._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {machines} AS m
                SET last_heartbeat_at = GREATEST(COALESCE(m.last_heartbeat_at, %s), v.seen)
                FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, seen)
                WHERE m.id = v.id""",  # table names from the models; every value is bound
            [_EPOCH, ids, seen],
        )
        cursor.execute(
            f"""UPDATE {credentials} AS c
                SET last_used_at = GREATEST(COALESCE(c.last_used_at, %s), v.seen)
                FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, seen)
                WHERE c.machine_id = v.id AND c.revoked_at IS NULL
                  AND (c.last_used_at IS NULL OR c.last_used_at < %s)""",
            [_EPOCH, ids, seen, touched_before],
        )


# How each engine writes a batch, and machines per batch. PostgreSQL takes a batch as two array
# parameters, so one statement carries a whole fleet (up to 10,000 machines) and the statement
# count per flush stays the same from 50 machines to 10,000. SQLite has no arrays: a CASE with a
# WHEN per machine, which grows quadratically in evaluation, hence small batches there (it
# serves `make run`'s few machines, not fleets).
_FLUSH_WRITERS = {"postgresql": (_write_batch_postgresql, 10_000)}
_FLUSH_WRITER_DEFAULT = (_write_batch_orm, 500)
