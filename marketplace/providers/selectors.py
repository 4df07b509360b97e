from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from marketplace.accounts.models import User
from marketplace.core.errors import NotFoundError
from marketplace.providers.models import Machine, Provider


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
