# The payments unit tests' in-process chain (eth-tester), reused rather than copied.
from tests.payments.conftest import (  # noqa: F401 - fixtures are found by name
    chain_w3,
    deployed,
    rich_alice,
    tester_w3,
)
