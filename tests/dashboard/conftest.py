import pytest

from tests.dashboard.seed import seed_market


@pytest.fixture(autouse=True)
def no_chain_receivers():
    """Seeding funds and activates orders; the payments receivers would turn that into chain
    transactions, which are not what the dashboard tests are about."""
    from marketplace.benchmarks import signals
    from marketplace.orders.signals import order_ended
    from marketplace.payments import receivers

    hooks = [
        (
            signals.machine_verification_failed,
            "on_verification_failed",
            "payments_verification_failed",
        ),
        (
            signals.machine_verification_passed,
            "on_verification_passed",
            "payments_verification_passed",
        ),
        (order_ended, "on_order_ended", "payments_order_ended"),
    ]
    detached = [
        (signal, getattr(receivers, name), uid)
        for signal, name, uid in hooks
        if signal.disconnect(dispatch_uid=uid)
    ]
    yield
    for signal, receiver, uid in detached:
        signal.connect(receiver, dispatch_uid=uid)


@pytest.fixture
def market(db):
    return seed_market(hours=24, step_minutes=120)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client
