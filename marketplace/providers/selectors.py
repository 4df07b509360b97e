from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from marketplace.accounts.models import User
from marketplace.core.errors import NotFoundError
from marketplace.providers.models import AgentCredential, Machine, Provider


def provider_list_for(*, user: User) -> QuerySet[Provider]:
    qs = Provider.objects.order_by("pk")
    return qs if user.is_staff else qs.filter(owner=user)


def provider_get_for(*, user: User, provider_id: int) -> Provider:
    provider = provider_list_for(user=user).filter(pk=provider_id).first()
    if provider is None:
        # Another owner's provider is reported as absent, not forbidden: no existence oracle.
        raise NotFoundError("No such provider.", code="providers_not_found")
    return provider


def machine_list_for(*, user: User) -> QuerySet[Machine]:
    qs = Machine.objects.select_related("provider").order_by("pk")
    return qs if user.is_staff else qs.filter(provider__owner=user)


def machine_get_for(*, user: User, machine_id: int) -> Machine:
    machine = machine_list_for(user=user).filter(pk=machine_id).first()
    if machine is None:
        raise NotFoundError("No such machine.", code="providers_machine_not_found")
    return machine


def machines_with_stale_heartbeat() -> QuerySet[Machine]:
    deadline = timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS)
    return Machine.objects.exclude(state=Machine.State.OFFLINE).filter(
        last_heartbeat_at__lt=deadline
    )


def agent_credential_machine_id(*, key_hash: str) -> int | None:
    """The machine of a live (unrevoked) agent credential, or None. One statement written out
    rather than built by the ORM: the agent channel runs it on every poll and heartbeat, and
    building the ORM query (select_related, ordering) cost more CPU than running it."""
    q = connection.ops.quote_name
    sql = (
        f"SELECT {q('machine_id')} FROM {q(AgentCredential._meta.db_table)} "
        f"WHERE {q('key_hash')} = %s AND {q('revoked_at')} IS NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [key_hash])
        row = cursor.fetchone()
    return None if row is None else row[0]
