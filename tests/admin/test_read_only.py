"""Records written by a decision or mirrored from the chain show no Save or Delete, and the
admin refuses a forged POST: even staff holding Django's change and delete permissions (otto,
the operator) only view them."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from marketplace.benchmarks.models import (
    BenchmarkJob,
    BenchmarkSuite,
    MachineUptime,
    PlatformIncident,
    Verdict,
)
from marketplace.orders.models import Order
from marketplace.payments.models import (
    ChainEvent,
    ChainTransaction,
    ContractDeployment,
    Reward,
    Slash,
    Stake,
    VerificationOutcome,
)
from tests.factories import ListingFactory
from tests.payments.helpers import make_order

pytestmark = pytest.mark.django_db

HASH = "0x" + "ab" * 32
WALLET = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def _event(name: str, log_index: int, **kw) -> ChainEvent:
    return ChainEvent.objects.create(
        chain_id=31337,
        contract="staking",
        address=WALLET,
        name=name,
        tx_hash=HASH,
        log_index=log_index,
        block_number=10,
        block_hash=HASH,
        is_final=True,
        **kw,
    )


@pytest.fixture
def records(alice, bob_provider, no_chain_receivers):
    listing = ListingFactory(machine__provider=bob_provider)
    machine = listing.machine
    order = make_order(renter=alice, listing=listing)
    job = BenchmarkJob.objects.create(
        machine=machine,
        purpose="periodic",
        kind="matmul",
        spec={},
        precision="fp32",
        flops=1,
        seed="secret-seed-value",
    )
    return {
        "orders.order": order,
        "payments.chaintransaction": ChainTransaction.objects.create(
            chain_id=31337,
            sender=WALLET,
            nonce=1,
            purpose="lease_start",
            idempotency_key="k",
            raw_tx="0x00",
            tx_hash=HASH,
            order=order,
        ),
        "payments.chainevent": _event("Staked", 0),
        "payments.stake": Stake.objects.create(
            chain_id=31337, address=WALLET, provider=bob_provider, staked=5_000_000
        ),
        "payments.slash": Slash.objects.create(
            event=_event("Slashed", 1),
            address=WALLET,
            provider=bob_provider,
            amount=1_000_000,
            report_hash=HASH,
            tx_hash=HASH,
        ),
        "payments.reward": Reward.objects.create(
            event=_event("Rewarded", 2),
            address=WALLET,
            provider=bob_provider,
            amount=10_000,
            report_hash=HASH,
            tx_hash=HASH,
        ),
        "payments.verificationoutcome": VerificationOutcome.objects.create(
            machine=machine, job_id="j1", passed=True, report_hash=HASH
        ),
        "payments.contractdeployment": ContractDeployment.objects.create(
            chain_id=31337, name="token", address=WALLET, block_number=1, tx_hash=HASH
        ),
        "benchmarks.benchmarkjob": job,
        "benchmarks.benchmarksuite": BenchmarkSuite.objects.create(machine=machine),
        "benchmarks.machineuptime": MachineUptime.objects.create(machine=machine, samples=3),
        "benchmarks.verdict": Verdict.objects.create(
            key="v1",
            kind="fail",
            passed=False,
            penalised=True,
            machine=machine,
            job=job,
            report_hash=HASH,
            reason="freivalds_failed",
        ),
        "benchmarks.platformincident": PlatformIncident.objects.create(
            source="health_probe", started_at=timezone.now()
        ),
        "providers.machine": machine,
        "listings.listing": listing,
    }


READ_ONLY = [
    "orders.order",
    "payments.chaintransaction",
    "payments.chainevent",
    "payments.stake",
    "payments.slash",
    "payments.reward",
    "payments.verificationoutcome",
    "payments.contractdeployment",
    "benchmarks.benchmarkjob",
    "benchmarks.benchmarksuite",
    "benchmarks.machineuptime",
    "benchmarks.verdict",
    "benchmarks.platformincident",
    "providers.machine",
    "listings.listing",
]


def _url(label: str, view: str, *args) -> str:
    app, model = label.split(".")
    return reverse(f"admin:{app}_{model}_{view}", args=args)


@pytest.mark.parametrize("label", READ_ONLY)
def test_change_page_has_no_save_or_delete_and_no_inputs(operator_client, records, label):
    obj = records[label]
    response = operator_client.get(_url(label, "change", obj.pk))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert "deletelink" not in page
    # Every field is shown as text: no <input> or <textarea> but the CSRF token.
    fields = re.findall(r'<(?:input|textarea|select)[^>]*name="([^"]+)"', page)
    assert set(fields) <= {"csrfmiddlewaretoken"}, fields


@pytest.mark.parametrize("label", READ_ONLY)
def test_forged_change_delete_and_add_are_refused(operator_client, records, label):
    obj = records[label]
    before = type(obj).objects.filter(pk=obj.pk).values().get()
    assert (
        operator_client.post(_url(label, "change", obj.pk), {"state": "settled"}).status_code == 403
    )
    assert operator_client.post(_url(label, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert operator_client.get(_url(label, "add")).status_code == 403
    assert type(obj).objects.filter(pk=obj.pk).values().get() == before


@pytest.mark.parametrize("label", READ_ONLY)
def test_the_list_offers_no_add_and_no_bulk_delete(operator_client, records, label):
    page = operator_client.get(_url(label, "changelist")).content.decode()
    assert "addlink" not in page
    assert 'value="delete_selected"' not in page


def test_a_viewer_sees_an_order_but_cannot_cancel_it(viewer_client, records):
    order = records["orders.order"]
    assert viewer_client.get(_url("orders.order", "change", order.pk)).status_code == 200
    page = viewer_client.get(_url("orders.order", "changelist")).content.decode()
    assert 'value="cancel"' not in page
    viewer_client.post(
        _url("orders.order", "changelist"), {"action": "cancel", "_selected_action": [order.pk]}
    )
    assert Order.objects.get(pk=order.pk).state == Order.State.CREATED


def test_the_benchmark_seed_never_reaches_the_page(operator_client, records):
    job = records["benchmarks.benchmarkjob"]
    page = operator_client.get(_url("benchmarks.benchmarkjob", "change", job.pk)).content
    assert b"secret-seed-value" not in page


def test_stake_and_slash_show_usd(operator_client, records):
    page = operator_client.get(_url("payments.stake", "changelist")).content.decode()
    assert "$5.00 (5,000,000 units)" in page
    page = operator_client.get(_url("payments.slash", "changelist")).content.decode()
    assert "$1.00 (1,000,000 units)" in page


def test_a_chain_event_page_reads_its_amounts(operator_client, bob_provider):
    event = ChainEvent.objects.create(
        chain_id=31337,
        contract="escrow",
        address=WALLET,
        name="LeaseSettled",
        tx_hash=HASH,
        log_index=9,
        block_number=12,
        block_hash=HASH,
        args={"secondsUsed": "1234", "providerAmount": "23323", "feeAmount": "2591"},
    )
    page = operator_client.get(_url("payments.chainevent", "change", event.pk)).content.decode()
    assert (
        "secondsUsed=1,234 s (0 h 20 min 34 s); providerAmount=$0.023323 (23,323 units); "
        "feeAmount=$0.002591 (2,591 units)"
    ) in page
