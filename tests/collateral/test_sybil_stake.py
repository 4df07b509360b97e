"""The stake side of Sybil resistance, through the API: a provider whose machine was rejected
for cheating cannot list a fresh one under a new name on the stake that was enough before, and
registration tokens per provider are limited."""

from __future__ import annotations

from rest_framework.test import APIClient

from marketplace.providers.models import Machine
from tests.api.helpers import publish_body
from tests.collateral.conftest import bob_stakes
from tests.conftest import client_for
from tests.factories import MachineFactory
from tests.payments.helpers import USDC, record_verdict

ONE_GPU_HARDWARE = {
    "accelerators": [
        {"kind": "gpu", "vendor": "NVIDIA", "model": "H100 80GB HBM3", "memory_gb": 80}
    ],
    "cpu": {"cores": 32},
    "ram_gib": 256,
}


def _register(bob_client, provider_id: int, name: str) -> Machine:
    token = bob_client.post(f"/api/v1/providers/{provider_id}/registration-tokens")
    assert token.status_code == 201, token.content
    registered = APIClient().post(
        "/api/v1/agent/register",
        {
            "registration_token": token.json()["registration_token"],
            "name": name,
            "hardware": ONE_GPU_HARDWARE,
        },
        format="json",
    )
    assert registered.status_code == 201, registered.content
    machine = Machine.objects.get(pk=registered.json()["machine_id"])
    # What a passed onboarding suite leaves (tests/factories.py), so that it may be listed.
    Machine.objects.filter(pk=machine.pk).update(
        state=Machine.State.VERIFIED,
        verified_device_count=1,
        verified_devices=[{"index": 0, "uuid": f"GPU-{name}-0"}],
        verified_precisions=["fp32"],
    )
    return machine


def test_a_rejected_provider_re_registering_must_stake_again(chain_w3, deployed, bob, bob_provider):
    bob_client = client_for(bob)
    staking_url = f"/api/v1/providers/{bob_provider.pk}/staking"
    bob_stakes(chain_w3, bob_client.get(staking_url, {"amount": str(75 * USDC)}).json())
    cheat = MachineFactory(
        provider=bob_provider, accelerator_count=1, state=Machine.State.SUSPENDED
    )
    record_verdict(machine_id=cheat.pk, key="9001", report_hash="0x" + "90" * 32)

    fresh = _register(bob_client, bob_provider.pk, "brand-new-name")
    response = bob_client.post("/api/v1/listings", publish_body(fresh.pk), format="json")
    # One rejection in the window doubles what every machine needs: 2 x 75 USDC.
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "collateral_insufficient"
    assert (error["detail"]["required"], error["detail"]["shortfall"]) == (
        150 * USDC,
        75 * USDC,
    )
    state = bob_client.get(staking_url).json()
    assert (state["rejected_machines"], state["multiplier"]) == (1, 2)

    bob_stakes(chain_w3, bob_client.get(staking_url, {"amount": str(75 * USDC)}).json())
    response = bob_client.post("/api/v1/listings", publish_body(fresh.pk), format="json")
    assert response.status_code == 201, response.content
    assert bob_client.get(staking_url).json()["machines"][0]["required"] == 150 * USDC


def test_a_rejection_outside_the_window_no_longer_counts(
    chain_w3, deployed, bob, bob_provider, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from marketplace.benchmarks.models import Verdict

    cheat = MachineFactory(provider=bob_provider, accelerator_count=1)
    record_verdict(machine_id=cheat.pk, key="9002", report_hash="0x" + "91" * 32)
    url = f"/api/v1/providers/{bob_provider.pk}/staking"
    assert client_for(bob).get(url).json()["multiplier"] == 2
    Verdict.objects.filter(key="9002").update(
        created_at=timezone.now()
        - timedelta(seconds=settings.COLLATERAL_REJECTION_WINDOW_SECONDS + 1)
    )
    assert client_for(bob).get(url).json()["multiplier"] == 1


def test_registration_tokens_per_provider_are_limited(bob, bob_provider, settings):
    settings.REGISTRATION_TOKENS_PER_DAY = 3
    bob_client = client_for(bob)
    url = f"/api/v1/providers/{bob_provider.pk}/registration-tokens"
    assert [bob_client.post(url).status_code for _ in range(3)] == [201, 201, 201]
    refused = bob_client.post(url)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "providers_registration_tokens_exhausted"
    assert error["detail"]["limit"] == 3
    assert bob_provider.registration_tokens.count() == 3
