from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from eth_utils import is_address, is_checksum_address, to_checksum_address

from marketplace.accounts.models import User
from marketplace.core.errors import (
    ApplicationError,
    InvalidTransition,
    NotFoundError,
    PermissionDeniedError,
)
from marketplace.core.tokens import token_display_prefix, token_generate, token_hash
from marketplace.providers import heartbeats
from marketplace.providers.authentication import AGENT_TOKEN_PREFIX
from marketplace.providers.models import AgentCredential, Machine, Provider, RegistrationToken

REGISTRATION_TOKEN_PREFIX = "reg"
REGISTRATION_TOKEN_TTL = timedelta(hours=24)

State = Machine.State

# The machine state machine of docs/architecture.md; anything not listed here is refused.
MACHINE_TRANSITIONS: dict[str, set[str]] = {
    State.REGISTERED: {State.VERIFIED, State.SUSPENDED, State.OFFLINE},
    State.VERIFIED: {State.VERIFIED, State.LISTED, State.SUSPENDED, State.OFFLINE},
    State.LISTED: {State.VERIFIED, State.LISTED, State.SUSPENDED, State.OFFLINE},
    State.SUSPENDED: {State.VERIFIED, State.OFFLINE},
    State.OFFLINE: {State.REGISTERED, State.REVERIFYING, State.SUSPENDED},
    # Not to listed directly: only a passed check returns it (machine_mark_reverified, through
    # verified), so publishing a listing cannot skip the check.
    State.REVERIFYING: {State.VERIFIED, State.SUSPENDED, State.OFFLINE},
}
# A machine that was in good standing when it went offline comes back through re-verification.
_REVERIFY_ON_RETURN = (State.VERIFIED, State.LISTED)


def wallet_address_normalize(address: Any) -> str:
    """Accepts a 0x address in lower case or in correct EIP-55 case; refuses a mistyped checksum."""
    if not isinstance(address, str) or not is_address(address):
        raise ApplicationError(
            "wallet_address must be a 0x-prefixed 20-byte hex address.",
            code="providers_bad_wallet_address",
        )
    has_mixed_case = address[2:] != address[2:].lower() and address[2:] != address[2:].upper()
    if has_mixed_case and not is_checksum_address(address):
        raise ApplicationError(
            "wallet_address has a wrong EIP-55 checksum (a typo?).",
            code="providers_bad_wallet_checksum",
        )
    return to_checksum_address(address)


def provider_create(*, owner: User, name: str, wallet_address: str) -> Provider:
    if not (owner.is_provider_owner or owner.is_staff):
        raise PermissionDeniedError(
            "Only provider owners can create providers.", code="providers_not_owner"
        )
    return Provider.objects.create(
        owner=owner, name=name, wallet_address=wallet_address_normalize(wallet_address)
    )


@transaction.atomic
def registration_token_create(*, provider: Provider, user: User) -> tuple[RegistrationToken, str]:
    if provider.owner_id != user.pk and not user.is_staff:
        raise NotFoundError("No such provider.", code="providers_not_found")
    # Each token is a machine that may be registered: a rejected owner does not get an endless
    # supply of fresh names. Counted under the provider's row lock, so two at once cannot both
    # slip under the limit.
    Provider.objects.select_for_update().filter(pk=provider.pk).first()
    since = timezone.now() - timedelta(days=1)
    recent = RegistrationToken.objects.filter(provider=provider, created_at__gte=since).count()
    if recent >= settings.REGISTRATION_TOKENS_PER_DAY:
        raise ApplicationError(
            f"This provider created {recent} registration tokens in the last 24 hours, the "
            f"limit; try again later.",
            code="providers_registration_tokens_exhausted",
            status_code=429,
            extra={"limit": settings.REGISTRATION_TOKENS_PER_DAY, "window_seconds": 86_400},
        )
    raw = token_generate(REGISTRATION_TOKEN_PREFIX)
    token = RegistrationToken.objects.create(
        provider=provider,
        key_hash=token_hash(raw),
        display_prefix=token_display_prefix(raw),
        expires_at=timezone.now() + REGISTRATION_TOKEN_TTL,
    )
    return token, raw


def _summary_from_hardware(hardware: dict) -> dict:
    accelerators = hardware.get("accelerators") or []
    cpu = hardware.get("cpu") or {}
    if accelerators:
        first = accelerators[0]
        kind = first["kind"]
        vendor = first.get("vendor", "")
        model = first["model"]
        memory_gb = first.get("memory_gb", 0)
        count = len(accelerators)
    else:
        kind, vendor = Machine.AcceleratorKind.CPU, cpu.get("vendor", "")
        model = cpu.get("model") or "CPU"
        memory_gb, count = 0, 1
    return {
        "accelerator_kind": kind,
        "accelerator_vendor": vendor,
        "accelerator_model": model,
        "accelerator_count": count,
        "accelerator_memory_gb": memory_gb,
        "vcpu_count": cpu.get("cores", 0),
        "ram_gib": hardware.get("ram_gib", 0),
        "backends": hardware.get("backends", []),
    }


@transaction.atomic
def machine_register(
    *, registration_token: str, name: str, hardware: dict, agent_version: str = ""
) -> tuple[Machine, str]:
    """Exchanges a one-time registration token for a machine and its agent credential."""
    token = (
        RegistrationToken.objects.select_for_update()
        .filter(key_hash=token_hash(registration_token))
        .first()
    )
    if token is None or token.used_at is not None or token.expires_at <= timezone.now():
        # One message for unknown, used and expired tokens: no oracle for guessing.
        raise ApplicationError(
            "Registration token is invalid, used or expired.",
            code="providers_bad_registration_token",
            status_code=401,
        )
    now = timezone.now()
    machine = Machine.objects.create(
        provider_id=token.provider_id,
        name=name,
        hardware=hardware,
        agent_version=agent_version,
        last_heartbeat_at=now,
        state_changed_at=now,
        **_summary_from_hardware(hardware),
    )
    raw = token_generate(AGENT_TOKEN_PREFIX)
    AgentCredential.objects.create(
        machine=machine, key_hash=token_hash(raw), display_prefix=token_display_prefix(raw)
    )
    token.used_at = now
    token.machine = machine
    token.save(update_fields=["used_at", "machine", "updated_at"])
    return machine, raw


def _machine_transition(machine_id: int, target: str, reason: str = "") -> Machine:
    """Locks the machine, checks the transition, writes it. Callers hold a transaction."""
    machine = Machine.objects.select_for_update().get(pk=machine_id)
    if target not in MACHINE_TRANSITIONS[machine.state]:
        raise InvalidTransition(
            entity="Machine", entity_id=machine.pk, current=machine.state, target=target
        )
    machine.state = target
    machine.state_reason = reason
    machine.state_changed_at = timezone.now()
    machine.save(update_fields=["state", "state_reason", "state_changed_at", "updated_at"])
    _listings_sync(machine.pk)
    return machine


def _listings_sync(machine_id: int) -> None:
    # Imported here: listings depends on providers, not the other way round.
    from marketplace.listings.services import listing_sync_searchable

    listing_sync_searchable(machine_id=machine_id)


def machine_heartbeat(*, machine_id: int) -> Machine:
    """Records that the machine's agent is alive. A machine online already costs one Redis write
    (flushed to the database in bulk by beat: heartbeats_flush); only coming back from offline,
    a state change, writes the database at once."""
    now = timezone.now()
    machine = Machine.objects.get(pk=machine_id)
    if machine.state == State.OFFLINE:
        return _machine_heartbeat_resume(machine_id=machine_id, now=now)
    heartbeats.heartbeat_record(machine_id=machine_id, at=now)
    machine.last_heartbeat_at = now
    return machine


def machine_seen_waiting(*, machine_id: int) -> None:
    """A poll for work that waited its full time without finding any: the agent was there
    until now. Recorded as its end's heartbeat, so that the server's last sight of an idle
    agent is never older than one poll, and the agent, which counts a poll as a heartbeat
    when its answer arrives, needs no heartbeat of its own. (A machine seen at the poll's
    start cannot have gone offline during the wait: the timeout is longer than any wait.)"""
    heartbeats.heartbeat_record(machine_id=machine_id, at=timezone.now())


def machine_seen_polling(*, machine_id: int, state: str) -> bool:
    """An agent's poll for work counts as its heartbeat (the agent skips the heartbeat call
    while it polls, which halves a waiting fleet's requests). `state` is the machine's state as
    the poll just read it, so a machine online costs no extra read. Returns whether the machine
    came back from offline (its state changed)."""
    if state == State.OFFLINE:
        _machine_heartbeat_resume(machine_id=machine_id, now=timezone.now())
        return True
    heartbeats.heartbeat_record(machine_id=machine_id, at=timezone.now())
    return False


@transaction.atomic
def _machine_heartbeat_resume(*, machine_id: int, now) -> Machine:
    """Heartbeats after offline. A machine that was verified or listed is not trusted back on
    one heartbeat (it may come back as something else): it goes to `reverifying`, keeping where
    it returns to in resume_state, and benchmarks schedules its check (scheduling.
    machines_reverify_returned); suspended and unverified machines go back where they were."""
    machine = Machine.objects.select_for_update().get(pk=machine_id)
    machine.last_heartbeat_at = now
    fields = ["last_heartbeat_at", "updated_at"]
    if machine.state == State.OFFLINE:
        back_to = machine.resume_state or State.REGISTERED
        if back_to in _REVERIFY_ON_RETURN:
            machine.state, machine.resume_state = State.REVERIFYING, back_to
        else:
            machine.state, machine.resume_state = back_to, ""
        machine.state_reason = "heartbeats resumed"
        machine.state_changed_at = machine.last_heartbeat_at
        fields += ["state", "resume_state", "state_reason", "state_changed_at"]
    machine.save(update_fields=fields)
    if "state" in fields:
        _listings_sync(machine.pk)
    return machine


@transaction.atomic
def machine_mark_offline(*, machine_id: int) -> Machine | None:
    """Called by beat for a machine whose heartbeats stopped. Returns None if it came back."""
    machine = Machine.objects.select_for_update().get(pk=machine_id)
    # The row may lag the heartbeats buffered in Redis by a flush interval: under the lock,
    # the buffered time decides (and is written, so what the caller reads agrees).
    seen = heartbeats.machines_last_seen(machine_ids=[machine_id]).get(machine_id)
    if seen is not None and (machine.last_heartbeat_at is None or seen > machine.last_heartbeat_at):
        machine.last_heartbeat_at = seen
        machine.save(update_fields=["last_heartbeat_at", "updated_at"])
    deadline = timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS)
    if machine.state == State.OFFLINE or (
        machine.last_heartbeat_at and machine.last_heartbeat_at > deadline
    ):
        return None
    if machine.state != State.REVERIFYING:
        # A machine lost again while reverifying still returns where it was listed to be.
        machine.resume_state = machine.state
    machine.state = State.OFFLINE
    machine.state_reason = "no heartbeat"
    machine.state_changed_at = timezone.now()
    machine.save(
        update_fields=["state", "resume_state", "state_reason", "state_changed_at", "updated_at"]
    )
    _listings_sync(machine.pk)
    return machine


@transaction.atomic
def machine_mark_verified(*, machine_id: int, reason: str = "passed verification") -> Machine:
    """Owned by the benchmarks app: only a passed onboarding suite may call this."""
    machine = Machine.objects.select_for_update().get(pk=machine_id)
    if machine.state in (State.VERIFIED, State.LISTED):
        return machine  # re-verification of a machine already in good standing
    return _machine_transition(machine_id, State.VERIFIED, reason)


@transaction.atomic
def machine_mark_reverified(*, machine_id: int, listed: bool) -> Machine | None:
    """Owned by the benchmarks app: a machine back from offline passed its check and returns to
    listed (it still has an open listing, which the caller above the listings app knows) or
    verified. None when it is not reverifying any more (suspended, offline again)."""
    machine = Machine.objects.select_for_update().get(pk=machine_id)
    if machine.state != State.REVERIFYING:
        return None
    back_to_listed = listed and machine.resume_state == State.LISTED
    reason = "passed re-verification after offline"
    machine = _machine_transition(machine_id, State.VERIFIED, reason)
    if back_to_listed:
        machine = _machine_transition(machine_id, State.LISTED, reason)
    machine.resume_state = ""
    machine.save(update_fields=["resume_state", "updated_at"])
    return machine


@transaction.atomic
def machine_mark_listed(*, machine_id: int) -> Machine:
    return _machine_transition(machine_id, State.LISTED, "listing published")


@transaction.atomic
def machine_mark_unlisted(*, machine_id: int) -> Machine:
    machine = Machine.objects.select_for_update().get(pk=machine_id)
    if machine.state != State.LISTED:
        return machine
    return _machine_transition(machine_id, State.VERIFIED, "listing closed")


@transaction.atomic
def machine_suspend(*, machine_id: int, reason: str) -> Machine:
    if not reason:
        raise ApplicationError("A suspension needs a reason.", code="providers_reason_required")
    machine = Machine.objects.select_for_update().get(pk=machine_id)
    if machine.state == State.OFFLINE:
        # Coming back online must not lift the suspension.
        machine.resume_state = State.SUSPENDED
        machine.state_reason = reason
        machine.save(update_fields=["resume_state", "state_reason", "updated_at"])
        return machine
    return _machine_transition(machine_id, State.SUSPENDED, reason)


@transaction.atomic
def machine_reinstate(*, machine_id: int, reason: str, listed: bool = False) -> Machine:
    """Lifts a suspension (staff decided it was wrong, or the fault is fixed): back to verified,
    or to listed when the machine still has an active listing (`listed`, which the caller above
    the listings app knows). An offline suspended machine keeps waiting for its heartbeat, now
    to come back reinstated. Anything but a suspended machine is refused."""
    if not reason:
        raise ApplicationError("A reinstatement needs a reason.", code="providers_reason_required")
    target = State.LISTED if listed else State.VERIFIED
    machine = Machine.objects.select_for_update().get(pk=machine_id)
    if machine.state == State.OFFLINE and machine.resume_state == State.SUSPENDED:
        machine.resume_state = target
        machine.state_reason = reason
        machine.save(update_fields=["resume_state", "state_reason", "updated_at"])
        return machine
    if machine.state != State.SUSPENDED:
        raise InvalidTransition(
            entity="Machine", entity_id=machine.pk, current=machine.state, target=target
        )
    machine = _machine_transition(machine_id, State.VERIFIED, reason)
    if listed:
        machine = _machine_transition(machine_id, State.LISTED, reason)
    return machine
