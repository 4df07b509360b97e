"""Every API endpoint as a valid request built from the shared fixtures, so that a test can change
one thing (the caller, one field, the auth header) and attribute the answer to it."""

from collections.abc import Callable
from dataclasses import dataclass, field

from rest_framework.test import APIClient

from tests.api.helpers import COMMITMENT, SKETCH, publish_body


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: object = None
    headers: dict = field(default_factory=dict)


def send(client: APIClient, call: Call):
    kwargs = dict(call.headers)
    if call.body is not None:
        kwargs["format"] = "json"
    return getattr(client, call.method.lower())(call.path, call.body, **kwargs)


def send_raw(client: APIClient, call: Call, raw: bytes, content_type="application/json"):
    return getattr(client, call.method.lower())(
        call.path, raw, content_type=content_type, **call.headers
    )


# fixture name -> fixture value (request.getfixturevalue)
Fixtures = Callable[[str], object]

_IDEMPOTENCY = {"HTTP_IDEMPOTENCY_KEY": "matrix-order-0001"}


def _registration_token(f: Fixtures) -> str:
    from marketplace.providers.services import registration_token_create

    provider = f("bob_provider")
    return registration_token_create(provider=provider, user=provider.owner)[1]


AGENT_HARDWARE = {
    "accelerators": [{"kind": "gpu", "vendor": "NVIDIA", "model": "L4", "memory_gb": 24}],
    "cpu": {"cores": 8},
    "ram_gib": 64,
}


def _next_job(f: Fixtures) -> Call:
    f("bob_queued_job")  # so the agent's poll has a job to take
    return Call("GET", "/api/v1/agent/jobs/next")


_WEBHOOK_URL = "https://1.1.1.1/hooks/marketplace"


def _alice_webhook(f: Fixtures) -> int:
    from marketplace.webhooks.services import endpoint_create

    return endpoint_create(user=f("alice"), url=_WEBHOOK_URL, event_types=[]).pk


def _funding(f: Fixtures) -> Call:
    f("deployed")  # the token and escrow contracts, on the in-process chain
    return Call("GET", f"/api/v1/orders/{f('alice_order').pk}/funding")


def _workload(f: Fixtures, *, state: str = "queued", results: bool = False) -> Call:
    """A workload of alice's on a lease of bob's agent's own machine (so the agent's calls can
    succeed), with an input archive, driven to `state` through the real services."""
    import io
    import tarfile

    from django.core.files.base import ContentFile

    from marketplace.orders.services import (
        order_activate,
        order_create,
        order_mark_funded,
        order_mark_starting,
    )
    from marketplace.workloads import services
    from tests.factories import ListingFactory

    f("settings").MEDIA_ROOT = str(f("tmp_path") / "media")
    machine, _ = f("bob_agent")
    listing = ListingFactory(machine=machine, provider=machine.provider, accelerator_count=2)
    order, _ = order_create(
        renter=f("alice"),
        listing_id=listing.pk,
        pricing_mode="on_demand",
        accelerators=1,
        hours=1,
        idempotency_key="matrix-workload-lease",
    )
    order_mark_funded(order_id=order.pk)
    order_mark_starting(order_id=order.pk)
    order_activate(order_id=order.pk)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("run.sh")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"true\n"))
    workload = services.workload_submit(
        user=f("alice"),
        order_id=order.pk,
        argv=["sh", "run.sh"],
        archive=ContentFile(archive.getvalue(), name="in.tar.gz"),
    )
    if state in ("starting", "running") or results:
        services.workload_claim_next(machine_id=machine.pk)
    if state == "running" or results:
        services.workload_start(machine_id=machine.pk, workload_id=workload.pk)
    if results:
        services.workload_finish(
            machine_id=machine.pk,
            workload_id=workload.pk,
            outcome="exited",
            exit_code=0,
            result=ContentFile(archive.getvalue(), name="result.tar.gz"),
        )
    return workload


def _renter_workload(f: Fixtures, suffix: str = "", *, method="GET", results=False) -> Call:
    workload = _workload(f, results=results)
    return Call(method, f"/api/v1/orders/{workload.order_id}/workloads/{workload.pk}{suffix}")


def _agent_workload(f: Fixtures, suffix: str, *, method="POST", state="running", body=None):
    workload = _workload(f, state=state)
    return Call(method, f"/api/v1/agent/workloads/{workload.pk}{suffix}", body)


# (method, path template) -> a valid request on bob's / alice's objects.
ENDPOINTS: dict[tuple[str, str], Callable[[Fixtures], Call]] = {
    ("GET", "/api/v1/health"): lambda f: Call("GET", "/api/v1/health"),
    ("POST", "/api/v1/auth/signup"): lambda f: Call(
        "POST",
        "/api/v1/auth/signup",
        {"username": "newcomer", "password": "correct horse battery", "role": "renter"},
    ),
    ("POST", "/api/v1/auth/tokens"): lambda f: Call(
        "POST",
        "/api/v1/auth/tokens",
        {"username": f("alice").username, "password": "correct horse battery"},
    ),
    ("DELETE", "/api/v1/auth/tokens/current"): lambda f: Call(
        "DELETE", "/api/v1/auth/tokens/current"
    ),
    ("GET", "/api/v1/auth/me"): lambda f: Call("GET", "/api/v1/auth/me"),
    ("GET", "/api/v1/providers"): lambda f: Call("GET", "/api/v1/providers"),
    ("POST", "/api/v1/providers"): lambda f: Call(
        "POST",
        "/api/v1/providers",
        {"name": "new provider", "wallet_address": "0x90F79bf6EB2c4f870365E785982E1f101E93b906"},
    ),
    ("GET", "/api/v1/providers/{id}"): lambda f: Call(
        "GET", f"/api/v1/providers/{f('bob_provider').pk}"
    ),
    ("POST", "/api/v1/providers/{id}/registration-tokens"): lambda f: Call(
        "POST", f"/api/v1/providers/{f('bob_provider').pk}/registration-tokens"
    ),
    ("GET", "/api/v1/machines"): lambda f: Call("GET", "/api/v1/machines"),
    ("GET", "/api/v1/machines/{id}"): lambda f: Call(
        "GET", f"/api/v1/machines/{f('bob_verified_machine').pk}"
    ),
    ("POST", "/api/v1/machines/{id}/suspend"): lambda f: Call(
        "POST",
        f"/api/v1/machines/{f('bob_verified_machine').pk}/suspend",
        {"reason": "failed re-verification"},
    ),
    ("POST", "/api/v1/agent/register"): lambda f: Call(
        "POST",
        "/api/v1/agent/register",
        {
            "registration_token": _registration_token(f),
            "name": "l4-box",
            "hardware": AGENT_HARDWARE,
        },
    ),
    ("POST", "/api/v1/agent/heartbeat"): lambda f: Call("POST", "/api/v1/agent/heartbeat"),
    ("GET", "/api/v1/agent/machine"): lambda f: Call("GET", "/api/v1/agent/machine"),
    ("GET", "/api/v1/listings"): lambda f: Call("GET", "/api/v1/listings"),
    ("POST", "/api/v1/listings"): lambda f: Call(
        "POST", "/api/v1/listings", publish_body(f("bob_verified_machine").pk)
    ),
    ("GET", "/api/v1/listings/mine"): lambda f: Call("GET", "/api/v1/listings/mine"),
    ("GET", "/api/v1/listings/{id}"): lambda f: Call("GET", f"/api/v1/listings/{f('listing').pk}"),
    ("PATCH", "/api/v1/listings/{id}/prices"): lambda f: Call(
        "PATCH", f"/api/v1/listings/{f('listing').pk}/prices", {"price_per_hour": 3_600_000}
    ),
    ("POST", "/api/v1/listings/{id}/status"): lambda f: Call(
        "POST", f"/api/v1/listings/{f('listing').pk}/status", {"status": "paused"}
    ),
    ("GET", "/api/v1/orders"): lambda f: Call("GET", "/api/v1/orders"),
    ("POST", "/api/v1/orders"): lambda f: Call(
        "POST",
        "/api/v1/orders",
        {"listing_id": f("listing").pk, "pricing_mode": "on_demand", "accelerators": 1, "hours": 1},
        _IDEMPOTENCY,
    ),
    ("GET", "/api/v1/orders/{id}"): lambda f: Call("GET", f"/api/v1/orders/{f('alice_order').pk}"),
    ("POST", "/api/v1/orders/{id}/cancel"): lambda f: Call(
        "POST", f"/api/v1/orders/{f('alice_order').pk}/cancel"
    ),
    ("POST", "/api/v1/orders/{id}/stop"): lambda f: Call(
        "POST", f"/api/v1/orders/{f('alice_active_order').pk}/stop"
    ),
    # benchmarks: the agent's job protocol (jobs of bob's agent's machine) and the owner's view
    ("GET", "/api/v1/agent/jobs/next"): _next_job,
    ("GET", "/api/v1/agent/jobs/{id}"): lambda f: Call(
        "GET", f"/api/v1/agent/jobs/{f('bob_dispatched_job').pk}"
    ),
    ("POST", "/api/v1/agent/jobs/{id}/commitment"): lambda f: Call(
        "POST", f"/api/v1/agent/jobs/{f('bob_dispatched_job').pk}/commitment", COMMITMENT
    ),
    ("POST", "/api/v1/agent/jobs/{id}/sketch"): lambda f: Call(
        "POST", f"/api/v1/agent/jobs/{f('bob_dispatched_chain_job').pk}/sketch", SKETCH
    ),
    ("GET", "/api/v1/agent/jobs/{id}/challenge"): lambda f: Call(
        "GET", f"/api/v1/agent/jobs/{f('bob_challenged_job').pk}/challenge"
    ),
    ("POST", "/api/v1/agent/jobs/{id}/answer"): lambda f: Call(
        "POST", f"/api/v1/agent/jobs/{f('bob_challenged_job').pk}/answer", {"y": []}
    ),
    ("GET", "/api/v1/reports/{id}"): lambda f: Call(
        "GET", f"/api/v1/reports/{f('published_report').report_hash}"
    ),
    ("GET", "/api/v1/machines/{id}/benchmarks"): lambda f: Call(
        "GET", f"/api/v1/machines/{f('bob_verified_machine').pk}/benchmarks"
    ),
    # payments: alice's created order, with the contracts deployed on the in-process chain
    ("GET", "/api/v1/orders/{id}/funding"): _funding,
    ("GET", "/api/v1/orders/{id}/chain"): lambda f: Call(
        "GET", f"/api/v1/orders/{f('alice_order').pk}/chain"
    ),
    ("GET", "/api/v1/providers/{id}/chain"): lambda f: Call(
        "GET", f"/api/v1/providers/{f('bob_provider').pk}/chain"
    ),
    ("GET", "/api/v1/providers/{id}/staking"): lambda f: (
        f("deployed"),
        Call("GET", f"/api/v1/providers/{f('bob_provider').pk}/staking"),
    )[1],
    ("GET", "/api/v1/credits/{id}"): lambda f: (
        f("deployed"),
        Call("GET", f"/api/v1/credits/{f('bob_provider').wallet_address}"),
    )[1],
    # workloads: alice's on a lease of bob's agent's machine; the agent's side of them
    ("GET", "/api/v1/orders/{id}/workloads"): lambda f: Call(
        "GET", f"/api/v1/orders/{_workload(f).order_id}/workloads"
    ),
    ("POST", "/api/v1/orders/{id}/workloads"): lambda f: Call(
        "POST", f"/api/v1/orders/{_workload(f).order_id}/workloads", {"argv": ["true"]}
    ),
    ("GET", "/api/v1/orders/{id}/workloads/{id}"): lambda f: _renter_workload(f),
    ("GET", "/api/v1/orders/{id}/workloads/{id}/logs"): lambda f: _renter_workload(f, "/logs"),
    ("POST", "/api/v1/orders/{id}/workloads/{id}/cancel"): lambda f: _renter_workload(
        f, "/cancel", method="POST"
    ),
    ("GET", "/api/v1/orders/{id}/workloads/{id}/results"): lambda f: _renter_workload(
        f, "/results", results=True
    ),
    ("POST", "/api/v1/agent/workloads/next"): lambda f: (
        _workload(f),
        Call("POST", "/api/v1/agent/workloads/next"),
    )[1],
    ("GET", "/api/v1/agent/workloads/{id}"): lambda f: _agent_workload(f, "", method="GET"),
    ("GET", "/api/v1/agent/workloads/{id}/input"): lambda f: _agent_workload(
        f, "/input", method="GET"
    ),
    ("POST", "/api/v1/agent/workloads/{id}/start"): lambda f: _agent_workload(
        f, "/start", state="starting"
    ),
    ("POST", "/api/v1/agent/workloads/{id}/ping"): lambda f: _agent_workload(f, "/ping"),
    ("POST", "/api/v1/agent/workloads/{id}/logs"): lambda f: _agent_workload(
        f, "/logs", body={"seq": 0, "stream": "stdout", "data_b64": "aGk="}
    ),
    ("POST", "/api/v1/agent/workloads/{id}/finish"): lambda f: _agent_workload(
        f, "/finish?outcome=exited&exit_code=0"
    ),
    # webhooks: an endpoint of alice's (an IP literal: no DNS lookup, and a public address)
    ("GET", "/api/v1/webhooks"): lambda f: Call("GET", "/api/v1/webhooks"),
    ("POST", "/api/v1/webhooks"): lambda f: Call(
        "POST", "/api/v1/webhooks", {"url": _WEBHOOK_URL, "event_types": ["lease.active"]}
    ),
    ("GET", "/api/v1/webhooks/{id}"): lambda f: Call(
        "GET", f"/api/v1/webhooks/{_alice_webhook(f)}"
    ),
    ("DELETE", "/api/v1/webhooks/{id}"): lambda f: Call(
        "DELETE", f"/api/v1/webhooks/{_alice_webhook(f)}"
    ),
    ("POST", "/api/v1/webhooks/{id}/rotate-secret"): lambda f: Call(
        "POST", f"/api/v1/webhooks/{_alice_webhook(f)}/rotate-secret"
    ),
    ("GET", "/api/v1/webhooks/{id}/deliveries"): lambda f: Call(
        "GET", f"/api/v1/webhooks/{_alice_webhook(f)}/deliveries"
    ),
    # the staff dashboard: HTML pages behind the admin's session login
    ("GET", "/admin/dashboard/"): lambda f: Call("GET", "/admin/dashboard/"),
    ("GET", "/admin/dashboard/machines/{id}/"): lambda f: Call(
        "GET", f"/admin/dashboard/machines/{f('bob_verified_machine').pk}/"
    ),
    ("GET", "/api/schema/"): lambda f: Call("GET", "/api/schema/"),
    ("GET", "/api/docs/"): lambda f: Call("GET", "/api/docs/"),
}
