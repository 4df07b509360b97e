"""Real threads racing on one workload: a resent log chunk, the agent's finish against the
renter's cancel, two claims for one queued workload, and a submit against the lease's end.
Exactly one wins each time and the log and state stay consistent (run on PostgreSQL too)."""

import pytest

from marketplace.orders.services import order_stop_by_renter
from marketplace.workloads import services
from marketplace.workloads.models import Workload, WorkloadEvent, WorkloadLogChunk
from tests.races.conftest import race

pytestmark = pytest.mark.django_db(transaction=True)


def _submit(alice, lease) -> Workload:
    return services.workload_submit(user=alice, order_id=lease.pk, argv=["true"])


def _running(alice, lease, machine) -> Workload:
    workload = _submit(alice, lease)
    assert services.workload_claim_next(machine_id=machine.pk).pk == workload.pk
    return services.workload_start(machine_id=machine.pk, workload_id=workload.pk)


def test_the_same_chunk_sent_four_times_at_once_is_stored_once(alice, alice_lease, bob_box):
    machine = bob_box[0]
    workload = _running(alice, alice_lease, machine)

    def send():
        return services.workload_log_append(
            machine_id=machine.pk, workload_id=workload.pk, seq=0, stream="stdout", data=b"abc"
        )[1]

    outcomes = race(send, send, send, send)
    assert sorted(o[1] for o in outcomes) == [False, False, False, True]
    workload.refresh_from_db()
    assert workload.log_next_seq == 1 and workload.log_bytes == 3
    assert WorkloadLogChunk.objects.filter(workload=workload).count() == 1


def test_finish_and_cancel_at_once_end_the_workload_once(alice, alice_lease, bob_box):
    machine = bob_box[0]
    workload = _running(alice, alice_lease, machine)
    outcomes = race(
        lambda: services.workload_finish(
            machine_id=machine.pk, workload_id=workload.pk, outcome="exited", exit_code=0
        ),
        lambda: services.workload_cancel(
            user=alice, order_id=alice_lease.pk, workload_id=workload.pk
        ),
    )
    workload.refresh_from_db()
    assert workload.state in ("succeeded", "cancelled")
    finals = WorkloadEvent.objects.filter(workload=workload, to_state__in=Workload.FINAL)
    assert finals.count() == 1
    # The loser either saw the final state (finish answers it) or was refused (cancel: 409).
    errors = [o for o in outcomes if o[0] == "error"]
    assert len(errors) <= 1


def test_two_claims_hand_a_workload_out_once(alice, alice_lease, bob_box):
    machine = bob_box[0]
    workload = _submit(alice, alice_lease)
    outcomes = race(
        lambda: services.workload_claim_next(machine_id=machine.pk),
        lambda: services.workload_claim_next(machine_id=machine.pk),
    )
    claimed = [o[1] for o in outcomes if o[0] == "ok" and o[1] is not None]
    assert [w.pk for w in claimed] == [workload.pk]
    assert WorkloadEvent.objects.filter(workload=workload, to_state="starting").count() == 1


def test_a_submit_racing_the_lease_end_never_leaves_a_workload_queued(alice, alice_lease):
    outcomes = race(
        lambda: _submit(alice, alice_lease),
        lambda: order_stop_by_renter(order_id=alice_lease.pk, user=alice),
    )
    assert outcomes[1][0] == "ok"
    # Either the submit came first and the lease's end cancelled it, or it was refused.
    assert not Workload.objects.filter(state__in=Workload.OPEN).exists()
    if outcomes[0][0] == "error":
        assert outcomes[0][1].code == "workloads_order_not_active"
