"""The webhook endpoints against their own schema: schemathesis sends schema-valid and invalid
requests as a signed-in renter (and with real endpoint ids); every answer must be documented
and none a 5xx. (The whole-API fuzz in tests/fuzz covers every operation; this one runs the
webhook operations alone, with more cases each.)"""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.core.failures import FailureGroup

from marketplace.accounts.services import api_token_create
from marketplace.wsgi import application
from tests.fuzz.test_schema_fuzz import CHECKS, _requests_keep_the_db_connection
from tests.webhooks.conftest import endpoint_for

SETTINGS = {
    "derandomize": True,
    "database": None,
    "deadline": None,
    "phases": [Phase.explicit, Phase.generate],
    "suppress_health_check": list(HealthCheck),
    "max_examples": 25,
}


@pytest.mark.django_db
def test_webhook_operations_conform_and_never_error(alice, receiver):
    own = endpoint_for(alice, receiver.url)
    _, raw = api_token_create(user=alice, name="fuzz")
    failures, sent = [], 0
    with _requests_keep_the_db_connection():
        schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
        operations = [
            result.ok()
            for result in schema.get_all_operations()
            if result.ok().path.startswith("/api/v1/webhooks")
        ]
        assert len(operations) == 6
        for operation in operations:
            for mode in (
                schemathesis.GenerationMode.POSITIVE,
                schemathesis.GenerationMode.NEGATIVE,
            ):
                strategies = [operation.as_strategy(generation_mode=mode)]
                if operation.path_parameters:
                    strategies.append(
                        operation.as_strategy(
                            generation_mode=mode, path_parameters={"endpoint_id": own["id"]}
                        )
                    )

                @hypothesis_settings(**SETTINGS)
                @given(case=st.one_of(strategies))
                def run(case):
                    nonlocal sent
                    case.headers = {**(case.headers or {}), "Authorization": f"Token {raw}"}
                    response = case.call()
                    sent += 1
                    try:
                        case.validate_response(response, checks=CHECKS)
                    except FailureGroup as group:
                        failures.append(
                            f"{case.operation.label} -> {response.status_code}: "
                            + "; ".join(f.title for f in group.exceptions)
                            + f"\n  {response.text[:300]}"
                        )

                run()
    assert sent > 100
    assert not failures, "\n".join(failures[:10])
