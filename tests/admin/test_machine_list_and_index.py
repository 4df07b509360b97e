"""The machine list an operator scans: verified figure, reputation, active leases and stake per
machine, filters by state and model; and an index grouped by what operators do."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from marketplace.benchmarks.models import BenchmarkJob, MachineUptime
from marketplace.listings.services import listing_record_verified_tflops
from marketplace.payments.models import Stake
from marketplace.providers.models import Machine
from tests.factories import ListingFactory, MachineFactory, ProviderFactory
from tests.payments.helpers import make_active_order

pytestmark = pytest.mark.django_db


def _row(page: str, name: str) -> str:
    return next(r for r in re.findall(r"<tr>.*?</tr>", page, re.S) if f">{name}<" in r)


def _jobs(machine, states):
    for state in states:
        BenchmarkJob.objects.create(
            machine=machine,
            purpose="periodic",
            kind="matmul",
            spec={},
            precision="fp32",
            flops=1,
            seed="s",
            state=state,
            finished_at=timezone.now(),
        )


def test_machine_list_columns(operator_client, alice, bob_provider, no_chain_receivers):
    listing = ListingFactory(machine__provider=bob_provider, machine__name="h100-a")
    machine = listing.machine
    listing_record_verified_tflops(machine_id=machine.pk, tflops=3_520.0)
    make_active_order(renter=alice, listing=listing, key="one")
    make_active_order(renter=alice, listing=listing, key="two")
    # 3 of 4 decided jobs passed, 9 of 10 heartbeat samples online: 0.75 × 0.9 = 0.675.
    _jobs(machine, ["verified", "verified", "verified", "rejected"])
    MachineUptime.objects.create(machine=machine, samples=10, online_samples=9)
    Stake.objects.create(
        chain_id=31337,
        address=bob_provider.wallet_address,
        provider=bob_provider,
        staked=250_000_000,
    )
    MachineFactory(name="bare-box", provider=ProviderFactory(wallet_address="0x" + "1" * 40))

    page = operator_client.get(reverse("admin:providers_machine_changelist")).content.decode()
    row = _row(page, "h100-a")
    assert "3,520.0" in row
    assert "0.68 (3/4 passed)" in row
    assert re.search(r'<td class="field-active_leases_column">2</td>', row)
    assert "$250.00 (250,000,000 units)" in row
    bare = _row(page, "bare-box")
    assert "no decided job" in bare and "no stake" in bare
    assert re.search(r'<td class="field-active_leases_column">0</td>', bare)
    # The machine's own page shows the same figures.
    detail = operator_client.get(
        reverse("admin:providers_machine_change", args=[machine.pk])
    ).content.decode()
    assert "$250.00 (250,000,000 units)" in detail and "0.68 (3/4 passed)" in detail


def test_machine_list_filters_by_state_and_model(operator_client, bob_provider):
    MachineFactory(name="a100-up", accelerator_model="A100 80GB", provider=bob_provider)
    MachineFactory(
        name="a100-barred",
        accelerator_model="A100 80GB",
        provider=bob_provider,
        state=Machine.State.SUSPENDED,
    )
    MachineFactory(name="l40s-up", accelerator_model="L40S", provider=bob_provider)
    url = reverse("admin:providers_machine_changelist")

    def names(**query):
        page = operator_client.get(url, query).content.decode()
        return set(re.findall(r'class="field-name"><a [^>]*>([\w-]+)</a>', page)) | set(
            re.findall(r'<th class="field-name"><a [^>]*>([\w-]+)</a>', page)
        )

    assert names(accelerator_model="A100 80GB") == {"a100-up", "a100-barred"}
    assert names(state="suspended") == {"a100-barred"}
    assert names(state="verified", accelerator_model="A100 80GB") == {"a100-up"}
    # Offline, and barred again when it returns: the suspended filter counts it.
    MachineFactory(
        name="a100-gone",
        accelerator_model="A100 80GB",
        provider=bob_provider,
        state=Machine.State.OFFLINE,
        resume_state=Machine.State.SUSPENDED,
    )
    assert names(suspended="yes") == {"a100-barred", "a100-gone"}
    assert names(suspended="no") == {"a100-up", "l40s-up"}


def test_index_groups_models_by_what_operators_do(operator_client):
    page = operator_client.get(reverse("admin:index")).content.decode()
    groups = re.findall(r'<caption>\s*<a href="[^"]*" class="section"[^>]*>([^<]+)</a>', page)
    assert groups[:5] == [
        "Leases and money",
        "Fleet",
        "Verification",
        "Incidents and alerts",
        "People and access",
    ]
    money = page[page.index("Leases and money") : page.index(">Fleet<")]
    assert ">Slashes<" in money and ">Orders<" in money and ">Chain transactions<" in money
    assert "Slashs" not in page


def test_an_app_page_keeps_its_own_models(operator_client):
    page = operator_client.get(reverse("admin:app_list", args=["payments"])).content.decode()
    assert "Chain events" in page and "Orders" not in page.split('id="content-main"')[1]


def test_page_reputations_match_the_per_machine_figure(settings):
    from datetime import timedelta

    from marketplace.benchmarks.selectors import machine_reputation
    from marketplace.dashboard.selectors import machine_reputations

    settings.BENCHMARK_REPUTATION_WINDOW = 3
    now = timezone.now()
    machines = [MachineFactory() for _ in range(4)]
    # Newest first: only the 3 newest count; a no-fault ending is left out.
    states = [
        [("verified", ""), ("rejected", "freivalds_failed"), ("verified", ""), ("rejected", "x")],
        [("expired", "platform_unavailable"), ("verified", ""), ("rejected", "row_mismatch")],
        [],
        [("verified", "")] * 5,
    ]
    for machine, jobs in zip(machines, states, strict=True):
        for age, (state, reason) in enumerate(jobs):
            BenchmarkJob.objects.create(
                machine=machine,
                purpose="periodic",
                kind="matmul",
                spec={},
                precision="fp32",
                flops=1,
                seed="s",
                state=state,
                outcome_reason=reason,
                finished_at=now - timedelta(minutes=age),
            )
    MachineUptime.objects.create(machine=machines[0], samples=10, online_samples=9)
    MachineUptime.objects.create(machine=machines[2], samples=0, online_samples=0)
    batch = machine_reputations(machine_ids=[m.pk for m in machines])
    assert batch == {m.pk: machine_reputation(machine_id=m.pk) for m in machines}
    # Worked by hand: 2 of the 3 newest passed, × 0.9 uptime.
    assert batch[machines[0].pk]["score"] == pytest.approx(2 / 3 * 0.9)
    assert batch[machines[1].pk]["recent_jobs"] == 2


def test_machine_list_queries_do_not_grow_with_the_page(operator_client, bob_provider):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("admin:providers_machine_changelist")

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert operator_client.get(url).status_code == 200
        return len(ctx.captured_queries)

    for _ in range(5):
        ListingFactory(machine__provider=bob_provider)
    few = queries()
    for _ in range(25):
        ListingFactory(machine__provider=bob_provider)
    assert queries() == few
