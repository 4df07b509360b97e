"""Schemathesis in its stateful mode follows the schema's OpenAPI links as a renter would:
search → listing → create order → get order → funding / stop / cancel / chain, and register a
webhook → its deliveries / rotate. Every answer must be documented and none a 5xx. (A lease
goes past `created` only when the chain indexer sees the deposit, which no API call does; the
chain-backed lifecycle is covered by tests/integration.)"""

import secrets

import pytest
import schemathesis
from django.core.cache import cache
from django.db import transaction
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings

from marketplace.accounts.services import api_token_create
from marketplace.wsgi import application
from tests.factories import ListingFactory
from tests.fuzz.test_schema_fuzz import (  # noqa: F401 - _fuzz_environment is a fixture
    CHECKS,
    _fuzz_environment,
    _requests_keep_the_db_connection,
)
from tests.payments.conftest import chain_w3, deployed, tester_w3  # noqa: F401 - fixtures

PATHS = (
    r"^/api/v1/(listings(/\{listing_id\})?"
    r"|orders(/\{order_id\}(/(funding|stop|cancel|chain))?)?|webhooks.*)$"
)


@pytest.mark.django_db
# Throttles far above what the run sends; the contracts on the in-process chain, so funding
# instructions are real.
@pytest.mark.usefixtures("_fuzz_environment", "deployed")
def test_a_renter_following_the_links_meets_no_server_error(alice, bob_provider):
    listings = [ListingFactory(machine__provider=bob_provider).pk for _ in range(3)]
    _, raw = api_token_create(user=alice, name="stateful")
    failures, calls = [], []
    with _requests_keep_the_db_connection():
        schema = schemathesis.openapi.from_wsgi("/api/schema/", application).include(
            path_regex=PATHS
        )
        base = schema.as_state_machine()

        class Renter(base):
            # Each scenario starts from the same rows: Hypothesis replays a scenario and needs
            # the same answers (orders left by an earlier one would use up the capacity).
            def setup(self):
                self._savepoint = transaction.savepoint()
                cache.clear()  # throttle counts

            def teardown(self):
                transaction.savepoint_rollback(self._savepoint)

            def before_call(self, case):
                case.headers = {
                    **(case.headers or {}),
                    "Authorization": f"Token {raw}",
                    "Idempotency-Key": f"stateful-{secrets.token_hex(8)}",
                }
                # A body that names a listing names a real one, and an order is on demand for 1
                # accelerator for 1 hour, so orders get made and the links from them are
                # followed: this run is about links, and a derandomized draw of mostly reserved
                # or interruptible bodies (refused: the listing has no such prices) made one
                # order or none. Order bodies themselves are fuzzed by tests/fuzz.
                if case.operation.label == "POST /api/v1/orders" and isinstance(case.body, dict):
                    case.body.update(
                        listing_id=listings[0], pricing_mode="on_demand", accelerators=1, hours=1
                    )
                if case.operation.label == "POST /api/v1/webhooks" and isinstance(case.body, dict):
                    case.body["url"] = "https://1.1.1.1/hook"

            def validate_response(self, response, case, **kwargs):
                calls.append((case.operation.label, response.status_code))
                try:
                    case.validate_response(response, checks=CHECKS)
                except Exception as exc:  # recorded, so one run reports every failure
                    failures.append(f"{case.operation.label} -> {response.status_code}: {exc}")

        Renter.run(
            settings=hypothesis_settings(
                max_examples=60,
                stateful_step_count=8,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
        )
    assert not failures, "\n".join(failures[:10])
    assert not any(status >= 500 for _, status in calls)
    answered = {f"{label} {status}" for label, status in calls}
    # The links were followed: orders made and then used through their links, endpoints made and
    # then used through theirs. Which steps a derandomized run draws depends on the answers, so
    # this asks for some of them, not a fixed list.
    from_order = {
        "GET /api/v1/orders/{order_id} 200",
        "GET /api/v1/orders/{order_id}/chain 200",
        "GET /api/v1/orders/{order_id}/funding 200",
        "POST /api/v1/orders/{order_id}/cancel 200",
    }
    from_webhook = {
        "GET /api/v1/webhooks/{endpoint_id} 200",
        "GET /api/v1/webhooks/{endpoint_id}/deliveries 200",
        "POST /api/v1/webhooks/{endpoint_id}/rotate-secret 200",
        "DELETE /api/v1/webhooks/{endpoint_id} 204",
    }
    assert {"POST /api/v1/orders 201", "POST /api/v1/webhooks 201"} <= answered, sorted(answered)
    assert len(from_order & answered) >= 2, sorted(answered)
    assert len(from_webhook & answered) >= 2, sorted(answered)
