"""Schema-driven fuzzing of the whole API with schemathesis.

The OpenAPI schema is loaded from the app itself (GET /api/schema/ through the WSGI app, no
network) and every operation gets positive (schema-valid) and negative (schema-invalid) requests,
sent through the same WSGI app as each role: anonymous, renter (alice), provider owner (bob),
bob's machine agent, and staff. Path ids are drawn both at random and from real rows (bob's
provider, machines and listing, alice's orders), so requests reach the handlers and not only the
404 branch. Each response must not be a 5xx and must match the schema: a documented status code,
content type and body.

Throttles are set far above what the run sends (see `_fuzz_environment`), so a 429 can never hide
the response a request would otherwise get; the test asserts that none was seen.
"""

import itertools
import traceback
from contextlib import contextmanager

import pytest
import schemathesis
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from marketplace.accounts.models import ApiToken
from marketplace.accounts.services import api_token_create
from marketplace.benchmarks.models import BenchmarkJob
from marketplace.orders.models import Order
from marketplace.orders.services import (
    order_activate,
    order_create,
    order_mark_funded,
    order_mark_starting,
)
from marketplace.providers.services import machine_register, registration_token_create
from marketplace.wsgi import application
from tests.fuzz.conftest import RoleStats

ROLES = ["anonymous", "renter", "provider_owner", "agent", "staff"]

# Per operation, per role. About 35 operations × 5 roles × (positive + negative) gives well over
# 2,000 requests; Hypothesis stops early on operations with few distinct inputs (GET /health).
POSITIVE_EXAMPLES = 10
NEGATIVE_EXAMPLES = 6
MIN_REQUESTS_PER_ROLE = 400

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Hypothesis settings, fixed for CI: derandomize gives the same cases on every run, no example
# database carries state between runs, no shrinking (a failure is recorded, not raised) and no
# deadline (a slow request on a loaded CI machine is not a bug this test looks for).
_SETTINGS = {
    "derandomize": True,
    "database": None,
    "deadline": None,
    "phases": [Phase.explicit, Phase.generate],
    "suppress_health_check": list(HealthCheck),
    "print_blob": False,
}


@contextmanager
def _requests_keep_the_db_connection():
    # As Django's test client does: the WSGI handler would otherwise close the test's DB
    # connection (and with it the test transaction) around every request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture(scope="module")
def api_schema():
    with _requests_keep_the_db_connection():
        schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25, "the schema lost most of its operations"
    return operations


@pytest.fixture
def _fuzz_environment(settings):
    rates = {"auth": "1000000/second", "agent": "1000000/second", "user_write": "1000000/second"}
    # The project's throttles read the rates per request, so the settings override reaches them.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    # Agents long-poll GET /agent/jobs/next for up to 25 s; the fuzzer only needs one answer.
    settings.BENCHMARK_LONG_POLL_MAX_SECONDS = 0
    with _requests_keep_the_db_connection():
        yield


@pytest.fixture
def world(alice, bob, staff, bob_provider, listing):
    """Real rows for path ids, and a real credential for every role."""
    _, raw = registration_token_create(provider=bob_provider, user=bob)
    agent_machine, agent_credential = machine_register(
        registration_token=raw,
        name="fuzz-box",
        hardware={
            "accelerators": [
                {"kind": "gpu", "vendor": "NVIDIA", "model": "H100 80GB HBM3", "memory_gb": 80}
            ],
            "cpu": {"cores": 16},
            "ram_gib": 128,
        },
    )
    orders = []
    for n, hours in enumerate([2, 3]):
        order, _ = order_create(
            renter=alice,
            listing_id=listing.pk,
            pricing_mode=Order.PricingMode.ON_DEMAND,
            accelerators=1,
            hours=hours,
            idempotency_key=f"fuzz-order-{n:04d}",
        )
        orders.append(order)
    # One order stays created (cancellable), one runs (stoppable).
    order_mark_funded(order_id=orders[1].pk)
    order_mark_starting(order_id=orders[1].pk)
    order_activate(order_id=orders[1].pk)

    tokens = {}
    for role, user in [("renter", alice), ("provider_owner", bob), ("staff", staff)]:
        token, raw = api_token_create(user=user, name="fuzz")
        tokens[role] = (token, f"Token {raw}")
    tokens["agent"] = (None, f"Token {agent_credential}")

    jobs = list(BenchmarkJob.objects.filter(machine=agent_machine).values_list("pk", flat=True)[:2])
    return {
        "tokens": tokens,
        "ids": {
            "provider_id": [bob_provider.pk],
            "machine_id": [listing.machine_id, agent_machine.pk],
            "listing_id": [listing.pk],
            "order_id": [order.pk for order in orders],
            "job_id": jobs,
        },
    }


@pytest.fixture
def server_exceptions():
    """Tracebacks of unhandled exceptions, to say why a request answered 500."""
    seen: list[str] = []

    def record(sender, request=None, **kwargs):
        seen.append(traceback.format_exc(limit=-6))

    got_request_exception.connect(record, weak=False)
    yield seen
    got_request_exception.disconnect(record)


def _strategy(operation, mode, real_ids):
    """The operation's cases with generated path ids, or with each combination of real ones."""
    names = [parameter.name for parameter in operation.path_parameters]
    strategies = [operation.as_strategy(generation_mode=mode)]
    if names and all(real_ids.get(name) for name in names):
        for combo in itertools.product(*(real_ids[name] for name in names)):
            strategies.append(
                operation.as_strategy(
                    generation_mode=mode, path_parameters=dict(zip(names, combo, strict=True))
                )
            )
    return st.one_of(strategies)


_IDEMPOTENCY_KEYS = st.from_regex(r"[A-Za-z0-9._:-]{8,100}", fullmatch=True)
# Body and query fields that name rows, by the path parameter whose ids they take.
_ID_FIELDS = {"listing_id": "listing_id", "machine_id": "machine_id", "provider": "provider_id"}


def _point_at_real_rows(case, data, real_ids):
    """Half the time, an id in the body or query names a real row, and POST /orders carries a
    valid Idempotency-Key: random ones would stop nearly every request at validation."""
    containers = [c for c in (case.body, case.query) if isinstance(c, dict)]
    for container in containers:
        for name, source in _ID_FIELDS.items():
            if name in container and real_ids[source] and data.draw(st.booleans()):
                container[name] = data.draw(st.sampled_from(real_ids[source]))
    if "Idempotency-Key" in (case.headers or {}) and data.draw(st.booleans()):
        case.headers["Idempotency-Key"] = data.draw(_IDEMPOTENCY_KEYS)


def _fuzz(operations, *, role, world, stats, server_exceptions):
    """Sends every operation's generated cases as `role`, recording each response in `stats`."""
    token, authorization = world["tokens"].get(role, (None, None))

    def exercise(case, data):
        _point_at_real_rows(case, data, world["ids"])
        if authorization is not None:
            # Replaces the header the schema's security scheme made schemathesis generate; an
            # anonymous caller keeps the generated one (never a valid credential).
            case.headers = {**(case.headers or {}), "Authorization": authorization}
        server_exceptions.clear()
        response = case.call()
        stats.requests += 1
        stats.statuses[response.status_code] += 1
        if token is not None and case.method.upper() == "DELETE":
            # DELETE /auth/tokens/current revokes the role's token; the run goes on with it.
            ApiToken.objects.filter(pk=token.pk).update(revoked_at=None)
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            titles = "; ".join(sorted({failure.title for failure in group.exceptions}))
            messages = "\n".join(failure.message[:500] for failure in group.exceptions)
            entry = (
                f"{case.operation.label} -> {response.status_code}: {titles}\n{messages}\n"
                f"  {case.as_curl_command()}\n"
                f"  body: {response.text[:300]}"
            )
            if server_exceptions:
                entry += "\n" + server_exceptions[-1]
            if response.status_code >= 500:
                stats.server_errors.append(entry)
            else:
                stats.schema_violations.append(entry)

    for operation in operations:
        for mode, examples in [
            (schemathesis.GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
            (schemathesis.GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
        ]:
            strategy = _strategy(operation, mode, world["ids"])

            @hypothesis_settings(max_examples=examples, **_SETTINGS)
            @given(case=strategy, data=st.data())
            def run(case, data):
                exercise(case, data)

            try:
                run()
            except Unsatisfiable:
                # Only an operation with nothing to invalidate (GET /health) has no negative
                # cases; a positive case that cannot be generated is a broken schema.
                if mode is schemathesis.GenerationMode.POSITIVE:
                    raise
                stats.no_negative_cases.append(operation.label)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_api_conforms_to_its_schema_and_never_errors(
    role, api_schema, world, fuzz_stats, server_exceptions, _fuzz_environment
):
    stats = fuzz_stats[role] = RoleStats()
    _fuzz(api_schema, role=role, world=world, stats=stats, server_exceptions=server_exceptions)

    assert stats.requests >= MIN_REQUESTS_PER_ROLE
    assert 429 not in stats.statuses, "a throttle answered: the fuzz run must not be throttled"
    assert not stats.server_errors, "\n\n".join(stats.server_errors[:20])
    assert not stats.schema_violations, "\n\n".join(stats.schema_violations[:20])


@pytest.mark.django_db
def test_fuzzing_catches_a_server_error_and_an_undocumented_body(
    api_schema, world, server_exceptions, _fuzz_environment, monkeypatch
):
    """The harness itself: a view that crashes, and one that answers off-schema, are caught."""
    from rest_framework.response import Response

    from marketplace.core.views import HealthApi

    [health] = [op for op in api_schema if op.label == "GET /api/v1/health"]

    def crash(self, request):
        raise RuntimeError("boom")

    monkeypatch.setattr(HealthApi, "get", crash)
    crashed = RoleStats()
    _fuzz(
        [health], role="anonymous", world=world, stats=crashed, server_exceptions=server_exceptions
    )
    assert crashed.requests >= 1 and crashed.server_errors
    assert "RuntimeError: boom" in crashed.server_errors[0]

    monkeypatch.setattr(HealthApi, "get", lambda self, request: Response({"status": 1}))
    off_schema = RoleStats()
    _fuzz(
        [health],
        role="anonymous",
        world=world,
        stats=off_schema,
        server_exceptions=server_exceptions,
    )
    assert off_schema.schema_violations and not off_schema.server_errors
