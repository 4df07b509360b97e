# The API tests' actors and objects (alice's orders, bob's agent) serve these tests too.
from tests.api.conftest import alice_active_order, alice_order, bob_agent  # noqa: F401
