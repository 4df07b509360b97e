"""Collateral before capacity, through the API: a machine is listed, shown and orderable only
while its provider's free stake covers it; the staking endpoint says how much and hands over the
calldata; attackers who list on no stake, or unstake once listed, are refused."""

from __future__ import annotations

import pytest

from marketplace.listings.models import Listing
from marketplace.orders.models import Order
from marketplace.payments.indexer import index
from tests.api.helpers import publish_body
from tests.collateral.conftest import bob_signs, bob_stakes
from tests.conftest import client_for
from tests.payments.helpers import ALICE_KEY, USDC, fund_with_instructions

# 75 USDC: base 50 + 25 per accelerator, one GPU, no rejections.
ONE_GPU = 75 * USDC
# A one-GPU, one-hour on-demand lease at the listing's 2.4984 USDC per accelerator-hour:
# escrow 2,498,400 + rewards 10,000 = 2,508,400 at risk; one check (P(caught) = 0.95) and the
# 1.2 margin: ceil(2,508,400 * 1.2 / 0.95) = ceil(3,168,505.26) = 3,168,506.
ONE_HOUR_LEASE_LOCK = 3_168_506


def _order_body(listing_id: int) -> dict:
    return {"listing_id": listing_id, "pricing_mode": "on_demand", "accelerators": 1, "hours": 1}


def _searchable_ids(client) -> set[int]:
    return {row["id"] for row in client.get("/api/v1/listings").json()["results"]}


def _bob_leases_one_gpu_for_an_hour(chain_w3, bob_client, bob_machine, alice, capture, key):
    """bob stakes his machine's cover plus one lease's lock and lists it; alice orders one GPU
    for an hour and funds it. Returns (provider id, listing id, alice's client, order id)."""
    provider = bob_machine.provider_id
    bob_stakes(
        chain_w3,
        bob_client.get(
            f"/api/v1/providers/{provider}/staking",
            {"amount": str(ONE_GPU + ONE_HOUR_LEASE_LOCK)},
        ).json(),
    )
    listing_id = bob_client.post(
        "/api/v1/listings", publish_body(bob_machine.pk), format="json"
    ).json()["id"]
    renter = client_for(alice)
    order_id = renter.post(
        "/api/v1/orders", _order_body(listing_id), format="json", HTTP_IDEMPOTENCY_KEY=key
    ).json()["id"]
    fund_with_instructions(
        chain_w3, ALICE_KEY, renter.get(f"/api/v1/orders/{order_id}/funding").json()
    )
    with capture(execute=True):
        index()  # the deposit: the lease's lock goes on chain after commit
    return provider, listing_id, renter, order_id


@pytest.fixture
def bob_client(bob):
    return client_for(bob)


def test_listing_with_zero_stake_is_refused_with_the_shortfall(deployed, bob_client, bob_machine):
    response = bob_client.post("/api/v1/listings", publish_body(bob_machine.pk), format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "collateral_insufficient"
    assert error["detail"]["shortfall"] == ONE_GPU and error["detail"]["free"] == 0
    assert "stake 75000000 more units" in error["message"]
    assert not Listing.objects.exists()


def test_staking_endpoint_calldata_stakes_and_then_the_machine_lists(
    chain_w3, deployed, bob_client, bob_machine, alice
):
    plan = bob_client.get(f"/api/v1/providers/{bob_machine.provider_id}/staking").json()
    # Nothing listed yet: nothing required; asking with the machine about to be listed is the
    # publish call itself. Stake what one GPU needs.
    assert (plan["staked"], plan["required"], plan["shortfall"]) == (0, 0, 0)
    assert plan["approve_calldata"] is None and plan["withdraw_calldata"] is None
    plan = bob_client.get(
        f"/api/v1/providers/{bob_machine.provider_id}/staking", {"amount": str(ONE_GPU)}
    ).json()
    assert plan["stake_amount"] == ONE_GPU
    bob_stakes(chain_w3, plan)

    response = bob_client.post("/api/v1/listings", publish_body(bob_machine.pk), format="json")
    assert response.status_code == 201, response.content
    listing_id = response.json()["id"]
    assert listing_id in _searchable_ids(client_for(alice))

    state = bob_client.get(f"/api/v1/providers/{bob_machine.provider_id}/staking").json()
    assert (state["staked"], state["free"], state["required"], state["shortfall"]) == (
        ONE_GPU,
        ONE_GPU,
        ONE_GPU,
        0,
    )
    assert state["covered"] is True and state["unstakable"] == 0
    assert state["request_unstake_calldata"] is None
    assert [(m["machine_id"], m["required"]) for m in state["machines"]] == [
        (bob_machine.pk, ONE_GPU)
    ]


def test_unstaking_right_after_listing_hides_the_machine_and_refuses_orders(
    chain_w3, deployed, bob_client, bob_machine, alice
):
    provider = bob_machine.provider_id
    bob_stakes(
        chain_w3,
        bob_client.get(f"/api/v1/providers/{provider}/staking", {"amount": str(ONE_GPU)}).json(),
    )
    listing_id = bob_client.post(
        "/api/v1/listings", publish_body(bob_machine.pk), format="json"
    ).json()["id"]

    # The attacker: list, then take the stake back at once.
    plan = bob_client.get(
        f"/api/v1/providers/{provider}/staking", {"unstake_amount": str(ONE_GPU)}
    ).json()
    bob_signs(chain_w3, plan, "request_unstake_calldata")

    state = bob_client.get(f"/api/v1/providers/{provider}/staking").json()
    assert (state["staked"], state["pending_unstake"], state["shortfall"]) == (0, ONE_GPU, ONE_GPU)
    assert state["unlock_time"] > 0 and state["withdraw_calldata"] is not None
    renter = client_for(alice)
    assert listing_id not in _searchable_ids(renter)
    response = renter.post(
        "/api/v1/orders",
        _order_body(listing_id),
        format="json",
        HTTP_IDEMPOTENCY_KEY="collateral-order-1",
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "collateral_insufficient"
    assert response.json()["error"]["detail"]["shortfall"] == ONE_GPU
    assert not Order.objects.exists()

    # Staking again brings it back.
    bob_stakes(
        chain_w3,
        bob_client.get(f"/api/v1/providers/{provider}/staking").json(),
    )
    assert listing_id in _searchable_ids(renter)


def test_an_order_needs_room_for_its_lease_lock_which_then_locks_stake(
    chain_w3, deployed, rich_alice, bob_client, bob_machine, alice, eager
):
    provider = bob_machine.provider_id
    bob_stakes(
        chain_w3,
        bob_client.get(f"/api/v1/providers/{provider}/staking", {"amount": str(ONE_GPU)}).json(),
    )
    listing_id = bob_client.post(
        "/api/v1/listings", publish_body(bob_machine.pk), format="json"
    ).json()["id"]
    renter = client_for(alice)
    # Exactly the machine's requirement is free: nothing left for a lease's lock.
    refused = renter.post(
        "/api/v1/orders",
        _order_body(listing_id),
        format="json",
        HTTP_IDEMPOTENCY_KEY="collateral-order-1",
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["detail"]["shortfall"] == ONE_HOUR_LEASE_LOCK

    bob_stakes(
        chain_w3,
        bob_client.get(
            f"/api/v1/providers/{provider}/staking", {"amount": str(ONE_HOUR_LEASE_LOCK)}
        ).json(),
    )
    created = renter.post(
        "/api/v1/orders",
        _order_body(listing_id),
        format="json",
        HTTP_IDEMPOTENCY_KEY="collateral-order-2",
    )
    assert created.status_code == 201, created.content
    order_id = created.json()["id"]
    fund_with_instructions(
        chain_w3, ALICE_KEY, renter.get(f"/api/v1/orders/{order_id}/funding").json()
    )
    index()
    order = Order.objects.get(pk=order_id)
    assert order.state in Order.COMMITTED

    state = bob_client.get(f"/api/v1/providers/{provider}/staking").json()
    assert state["locked"] == ONE_HOUR_LEASE_LOCK
    assert state["free"] == ONE_GPU and state["shortfall"] == 0
    assert [(lease["order_id"], lease["locked"]) for lease in state["leases"]] == [
        (order_id, ONE_HOUR_LEASE_LOCK)
    ]
    # The lock is not free stake: unstaking any of it would uncover the machine.
    assert state["unstakable"] == 0


def test_an_order_whose_provider_unstaked_before_funding_is_refunded_in_full(
    chain_w3, deployed, rich_alice, bob_client, bob_machine, alice, eager
):
    provider = bob_machine.provider_id
    bob_stakes(
        chain_w3,
        bob_client.get(
            f"/api/v1/providers/{provider}/staking",
            {"amount": str(ONE_GPU + ONE_HOUR_LEASE_LOCK)},
        ).json(),
    )
    listing_id = bob_client.post(
        "/api/v1/listings", publish_body(bob_machine.pk), format="json"
    ).json()["id"]
    renter = client_for(alice)
    order_id = renter.post(
        "/api/v1/orders",
        _order_body(listing_id),
        format="json",
        HTTP_IDEMPOTENCY_KEY="collateral-order-1",
    ).json()["id"]
    funding = renter.get(f"/api/v1/orders/{order_id}/funding").json()

    # bob takes his stake out between alice's order and her deposit.
    bob_signs(
        chain_w3,
        bob_client.get(
            f"/api/v1/providers/{provider}/staking",
            {"unstake_amount": str(ONE_GPU + ONE_HOUR_LEASE_LOCK)},
        ).json(),
        "request_unstake_calldata",
    )
    fund_with_instructions(chain_w3, ALICE_KEY, funding)
    index()  # the deposit: the order is cancelled, not leased on stake that left
    index()  # the 0-second settlement: a full refund
    order = Order.objects.get(pk=order_id)
    assert order.end_reason == "collateral_insufficient"
    assert order.billable_seconds == 0 and order.amount_owed == 0
    assert order.state in (Order.State.CANCELLED, Order.State.SETTLED)


def test_only_the_owner_reads_the_staking_endpoint_and_amounts_are_checked(
    deployed, bob_client, bob_machine, mallory, alice
):
    url = f"/api/v1/providers/{bob_machine.provider_id}/staking"
    for user in (mallory, alice):
        response = client_for(user).get(url)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "payments_provider_not_found"
    for bad in ("-5", "1.5", "0", "abc", "١٢", str(2**128)):
        response = bob_client.get(url, {"amount": bad})
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "payments_bad_amount"


def test_a_funded_lease_locks_the_stake_on_chain_and_unstaking_below_it_reverts(
    chain_w3,
    deployed,
    rich_alice,
    bob_client,
    bob_machine,
    alice,
    eager,
    django_capture_on_commit_callbacks,
):
    from eth_utils import keccak

    from marketplace.payments.collateral_services import provider_lock_send
    from tests.payments.helpers import BOB, BOB_KEY, sign_and_send

    provider, listing_id, renter, _ = _bob_leases_one_gpu_for_an_hour(
        chain_w3,
        bob_client,
        bob_machine,
        alice,
        django_capture_on_commit_callbacks,
        key="collateral-order-1",
    )
    staking = deployed["staking"]
    locked, until = staking.functions.lockOf(BOB).call()
    assert locked == ONE_HOUR_LEASE_LOCK and until > 0
    # Sent once: the same target again sends nothing new.
    first = provider_lock_send(provider_id=provider)
    assert provider_lock_send(provider_id=provider).pk == first.pk

    # bob tries to pull everything out from under the running lease: the contract refuses.
    everything = ONE_GPU + ONE_HOUR_LEASE_LOCK
    stake_locked = keccak(text="StakeLocked(uint256,uint256)")[:4]
    with pytest.raises(Exception) as refused:  # the in-process node raises its own type
        sign_and_send(
            chain_w3, BOB_KEY, staking.address, staking.encode_abi("requestUnstake", [everything])
        )
    assert repr(stake_locked)[2:-1] in str(refused.value)  # StakeLocked(locked, until)
    # What is above the lock (the machine's part) may leave; the machine then leaves search.
    sign_and_send(
        chain_w3, BOB_KEY, staking.address, staking.encode_abi("requestUnstake", [ONE_GPU])
    )
    index()
    assert listing_id not in _searchable_ids(renter)


def test_the_staking_endpoint_needs_no_chain_node_only_recorded_contracts(bob_client, bob_machine):
    # No contracts recorded (and no node at all in this test): a 409 that says so, not a 5xx.
    response = bob_client.get(f"/api/v1/providers/{bob_machine.provider_id}/staking")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "payments_not_deployed"


def test_the_on_chain_lock_is_recorded_confirmed_once_and_released_when_the_window_ends(
    chain_w3,
    deployed,
    rich_alice,
    bob_client,
    bob_machine,
    alice,
    eager,
    django_capture_on_commit_callbacks,
    monkeypatch,
):
    """The lock's transaction row says what it is (`stake_lock`, what operators filter on);
    a repeat with the lock confirmed touches no chain; one whose confirmation was never
    recorded (a worker killed after sending) is confirmed, not resent; and once the lease's
    dispute window is over the lock is released on chain (lock 0 until 0), once."""
    from datetime import timedelta

    from django.utils import timezone

    from marketplace.payments import chain
    from marketplace.payments.collateral_services import provider_lock_send
    from marketplace.payments.models import ChainTransaction
    from tests.payments.helpers import BOB

    provider, _, _, order_id = _bob_leases_one_gpu_for_an_hour(
        chain_w3,
        bob_client,
        bob_machine,
        alice,
        django_capture_on_commit_callbacks,
        key="collateral-lock-lifecycle",
    )
    staking = deployed["staking"]
    [lock] = ChainTransaction.objects.filter(provider_id=provider, purpose="stake_lock")
    assert lock.status == ChainTransaction.Status.CONFIRMED
    assert staking.functions.lockOf(BOB).call()[0] == ONE_HOUR_LEASE_LOCK

    # Confirmed and unchanged: nothing reaches the chain (here, a chain that would fail).
    def unreachable(*args, **kwargs):
        raise chain.TransientChainError("the node is down")

    with monkeypatch.context() as down:
        down.setattr(chain, "confirm", unreachable)
        down.setattr(chain, "send_call", unreachable)
        assert provider_lock_send(provider_id=provider).pk == lock.pk

    # Sent, its confirmation never recorded: confirmed now, not sent again.
    ChainTransaction.objects.filter(pk=lock.pk).update(status=ChainTransaction.Status.PENDING)
    again = provider_lock_send(provider_id=provider)
    assert (again.pk, again.status) == (lock.pk, ChainTransaction.Status.CONFIRMED)

    # The lease ran and ended three days ago: past the two-day window, nothing is locked.
    Order.objects.filter(pk=order_id).update(
        state=Order.State.SETTLED,
        started_at=timezone.now() - timedelta(days=3, hours=1),
        ended_at=timezone.now() - timedelta(days=3),
    )
    release = provider_lock_send(provider_id=provider)
    assert release.pk != lock.pk and release.purpose == "stake_lock"
    assert release.status == ChainTransaction.Status.CONFIRMED
    assert staking.functions.lockOf(BOB).call() == [0, 0]
    assert provider_lock_send(provider_id=provider).pk == release.pk  # released once
