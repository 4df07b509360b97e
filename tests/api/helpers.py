"""Helpers for the API-level tests: a snapshot of every row an API write could touch, the
error-shape assertion, and a valid listing body to spoil field by field."""

from contextlib import contextmanager

from marketplace.accounts.models import ApiToken, User
from marketplace.benchmarks.models import BenchmarkJob
from marketplace.listings.models import Listing, ReservedPrice
from marketplace.orders.models import Order
from marketplace.providers.models import AgentCredential, Machine, Provider, RegistrationToken

# The columns an API write may change; timestamps that every authenticated read touches
# (last_used_at, updated_at) are left out on purpose.
_WATCHED = {
    User: ("username", "role", "is_staff", "is_active", "password"),
    ApiToken: ("user_id", "revoked_at"),
    Provider: ("owner_id", "name", "wallet_address"),
    RegistrationToken: ("provider_id", "used_at", "machine_id"),
    Machine: ("state", "resume_state", "state_reason", "last_heartbeat_at"),
    AgentCredential: ("machine_id", "revoked_at"),
    Listing: (
        "status",
        "is_searchable",
        "price_per_hour",
        "interruptible_floor_per_hour",
        "price_per_tflop_hour",
    ),
    ReservedPrice: ("listing_id", "term", "price_per_hour"),
    Order: ("state", "accelerators", "ended_at", "end_reason"),
    BenchmarkJob: ("machine_id", "state", "commitment_root", "answer_received_at"),
}


def db_state() -> dict:
    return {
        model.__name__: list(model.objects.order_by("pk").values_list("pk", *fields))
        for model, fields in _WATCHED.items()
    }


@contextmanager
def nothing_written():
    """Fails the test if any watched row was created, deleted or changed inside the block."""
    before = db_state()
    yield
    after = db_state()
    changed = {name: (before[name], after[name]) for name in before if before[name] != after[name]}
    assert not changed, f"rows changed: {changed}"


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The response is a 4xx with the one error shape, and the expected code if given."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "detail"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["detail"], dict)
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


# A small benchmark job and a well-formed commitment for it.
JOB_SPEC = {"kind": "matmul", "n": 8, "precision": "fp32"}
COMMITMENT = {"root": "a" * 64, "agent_seconds": 0.5, "device": "GPU-test-0"}
# A small chain-sketch job and a well-formed message for it (the values are judged later, by
# the verification task, not by the endpoint).
CHAIN_JOB_SPEC = {"kind": "matmul_chain", "n": 64, "layers": 1, "rows": 8, "precision": "fp32"}
SKETCH = {
    "sketch": {"protocol": "chain-sketch/v1", "job": "0" * 32, "shape": [8, 4], "y": ""},
    "agent_seconds": 0.5,
    "device": "GPU-test-0",
}


def publish_body(machine_id: int, /, **overrides) -> dict:
    """A valid POST /listings body: only what the platform cannot know (the hardware is copied
    from the verified machine)."""
    body = {
        "machine_id": machine_id,
        "storage_gb": 30000,
        "network_gbps": 3200,
        "region": "eu-west",
        "price_per_hour": 2_498_400,
        "interruptible_floor_per_hour": 1_000_800,
        "reserved_prices": {"1m": 2_160_000},
    }
    body.update(overrides)
    return body
