"""A listing shows what the platform verified on the machine, never what its owner typed."""

import pytest

from marketplace.benchmarks.models import BenchmarkJob, BenchmarkSuite
from marketplace.listings.models import Listing
from marketplace.providers.models import Machine
from tests.benchmarks.conftest import CPU_HARDWARE
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

NUMPY_ONLY_CPU = {**CPU_HARDWARE, "backends": ["numpy"]}


def _drain(runner, limit=100):
    results = []
    for _ in range(limit):
        result = runner.run_once(wait=0)
        if result is None:
            return results
        results.append(result)
    raise AssertionError("agent never ran out of jobs")


def _publish(user, machine_id, **extra):
    body = {"machine_id": machine_id, "region": "local", "price_per_hour": 36_000, **extra}
    return client_for(user).post("/api/v1/listings", body, format="json")


def test_onboarding_records_the_verified_devices_and_precisions_on_the_machine(
    bob_provider, make_agent, runner_for
):
    machine, api, _ = make_agent(bob_provider)
    results = _drain(runner_for(api))
    assert {r.state for r in results} == {"verified"}
    machine.refresh_from_db()
    assert machine.state == Machine.State.VERIFIED
    assert machine.verified_device_count == 1
    # numpy + torch on a CPU: the precisions it passed, and no tf32 or fp8 it never ran.
    assert machine.verified_precisions == ["bf16", "fp16", "fp32", "int8"]
    uuid = machine.verified_devices[0]["uuid"]
    assert uuid.startswith("cpu-") and machine.verified_devices == [{"index": 0, "uuid": uuid}]
    assert set(
        BenchmarkJob.objects.filter(machine=machine).values_list("device_uuid", flat=True)
    ) == {uuid}


def test_the_short_publish_call_lists_the_verified_hardware(
    bob, bob_provider, make_agent, runner_for
):
    machine, api, _ = make_agent(bob_provider, hardware=NUMPY_ONLY_CPU)
    _drain(runner_for(api))
    response = _publish(bob, machine.pk)
    assert response.status_code == 201, response.json()
    listing = response.json()
    assert (listing["accelerator_kind"], listing["accelerator_count"]) == ("cpu", 1)
    assert listing["precisions"] == ["fp32"]  # all a NumPy-only CPU was asked, and passed
    assert listing["interconnect"] == "none" and listing["model"] == "AMD EPYC"
    assert listing["vcpu_count"] == 2 and listing["verified_tflops"] > 0


@pytest.mark.parametrize(
    "typed",
    [
        {"accelerator_kind": "gpu", "model": "H100 80GB HBM3"},
        {"accelerator_count": 8},
        {"precisions": ["fp32", "bf16", "fp8"]},
        {"interconnect": "nvlink"},
    ],
    ids=["gpu-kind", "eight-devices", "fp8", "nvlink"],
)
def test_a_machine_without_an_accelerator_cannot_be_listed_as_a_gpu(
    mallory, mallory_provider, make_agent, runner_for, typed
):
    machine, api, _ = make_agent(mallory_provider, hardware=NUMPY_ONLY_CPU)
    _drain(runner_for(api))
    response = _publish(mallory, machine.pk, **typed)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and set(typed) <= set(error["detail"])
    assert not Listing.objects.exists()
    assert Machine.objects.get(pk=machine.pk).state == Machine.State.VERIFIED


def test_a_machine_verified_before_devices_were_recorded_must_onboard_again(bob, bob_provider):
    from tests.factories import MachineFactory

    machine = MachineFactory(
        provider=bob_provider, verified_devices=[], verified_device_count=0, verified_precisions=[]
    )
    response = _publish(bob, machine.pk)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "listings_machine_not_measured"
    assert not Listing.objects.exists()


def test_suite_is_finished_before_the_machine_can_be_listed(bob, bob_provider, make_agent):
    machine, api, _ = make_agent(bob_provider)
    api.next_job(0)
    assert BenchmarkSuite.objects.get(machine=machine).state == "running"
    response = _publish(bob, machine.pk)
    assert response.status_code == 409
