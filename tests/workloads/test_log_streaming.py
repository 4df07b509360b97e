"""The agent's log streamer against a live server: output written while the server cannot be
reached arrives once, in order, when it can again (a chunk resent after a lost reply is stored
once: test_workload_api); a cancelled workload is noticed from the reply."""

import time

import pytest

from marketplace.orders.services import order_stop_by_renter
from marketplace.workloads import services
from marketplace.workloads.models import WorkloadLogChunk
from marketplace.workloads.selectors import workload_log_read
from tests.integration.conftest import free_port
from workers.agent.client import RequestsTransport
from workers.agent.workloads import LogStreamer, WorkloadApi

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running(alice, alice_lease, bob_box, live_server):
    """A running workload of alice's, and a transport with the machine's agent credential."""
    machine, agent_client, _ = bob_box
    workload = services.workload_submit(user=alice, order_id=alice_lease.pk, argv=["true"])
    services.workload_claim_next(machine_id=machine.pk)
    services.workload_start(machine_id=machine.pk, workload_id=workload.pk)
    credential = agent_client._credentials["HTTP_AUTHORIZATION"].removeprefix("Token ")
    return workload, RequestsTransport(live_server.url, credential, timeout=10)


def test_output_written_during_an_outage_arrives_once_and_in_order(running, live_server):
    workload, transport = running
    api = WorkloadApi(transport)
    streamer = LogStreamer(api, workload.pk, start_seq=0, log=lambda m: None)
    streamer.start()
    streamer.write("stdout", b"line 0\n")
    _until(lambda: streamer.next_seq == 1 and not streamer.pending)
    transport.base_url = f"http://127.0.0.1:{free_port()}"  # the server is unreachable
    for n in range(1, 6):
        streamer.write("stdout", f"line {n}\n".encode())
        time.sleep(0.3)  # several flushes, each failing
    streamer.write("stderr", b"warning\n")
    _until(lambda: len(streamer.pending) >= 2)
    transport.base_url = live_server.url  # the connection is back
    streamer.close(timeout=60)
    assert streamer.done.is_set() and not streamer.pending
    data, _ = workload_log_read(workload=workload, offset=0, limit=10_000)
    expected = b"".join(f"line {n}\n".encode() for n in range(6)) + b"warning\n"
    assert data == expected
    seqs = list(WorkloadLogChunk.objects.filter(workload=workload).values_list("seq", flat=True))
    assert seqs == list(range(len(seqs))) and len(seqs) == streamer.next_seq


def _until(predicate, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_the_streamer_notices_a_cancellation(running, alice, alice_lease):
    workload, transport = running
    streamer = LogStreamer(WorkloadApi(transport), workload.pk, log=lambda m: None)
    streamer.start()
    order_stop_by_renter(order_id=alice_lease.pk, user=alice)
    streamer.write("stdout", b"still running\n")
    streamer.close(timeout=60)
    assert streamer.should_stop() == "the workload is cancelled on the platform"
