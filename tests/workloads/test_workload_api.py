"""The renter's and the agent's workload API, end to end through real views, storage and
services: the happy path, every bad input the issue lists, and the lifecycle ties."""

import io
import json
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from marketplace.orders.services import order_create, order_stop_by_renter, orders_end_for_machine
from marketplace.providers.models import Machine
from marketplace.workloads.models import Workload, WorkloadEvent, WorkloadLogChunk
from marketplace.workloads.services import workloads_sweep
from tests.conftest import client_for
from tests.workloads.conftest import active_order
from tests.workloads.helpers import chunk, tar_bytes

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"argv": ["python", "train.py"], "env": {"EPOCHS": "3"}, "result_paths": ["out"]}


def _url(order, suffix=""):
    return f"/api/v1/orders/{order.pk}/workloads{suffix}"


def _submit_multipart(client, order, archive: bytes, spec=SPEC, **extra):
    upload = SimpleUploadedFile("input.tar.gz", archive, content_type="application/gzip")
    return client.post(
        _url(order), {"spec": json.dumps(spec), "archive": upload, **extra}, format="multipart"
    )


def _nothing_written(settings):
    media = Path(settings.MEDIA_ROOT)
    files = [p for p in media.rglob("*") if p.is_file()] if media.exists() else []
    return Workload.objects.count() == 0 and WorkloadEvent.objects.count() == 0 and not files


def test_alice_runs_a_workload_and_reads_its_logs_and_results(alice, alice_lease, bob_box):
    _, agent, _ = bob_box
    renter = client_for(alice)
    archive = tar_bytes({"train.py": b"print('hi')\n", "data/x.csv": b"1,2\n"})
    created = _submit_multipart(renter, alice_lease, archive)
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["state"] == "queued" and body["input_size"] == len(archive)

    job = agent.post("/api/v1/agent/workloads/next")
    assert job.status_code == 200
    job = job.json()
    assert job["id"] == body["id"] and job["state"] == "starting"
    assert job["argv"] == SPEC["argv"] and job["env"] == SPEC["env"]
    assert job["devices"] == [{"index": 0, "uuid": "GPU-a"}]
    assert 0 < job["seconds_left"] <= 2 * 3600
    downloaded = agent.get(f"/api/v1/agent/workloads/{job['id']}/input")
    assert b"".join(downloaded.streaming_content) == archive

    assert agent.post(f"/api/v1/agent/workloads/{job['id']}/start").json()["state"] == "running"
    for seq, data in enumerate([b"loss 1.0\n", b"loss 0.5\n", b"loss 0.2\n"]):
        reply = agent.post(f"/api/v1/agent/workloads/{job['id']}/logs", chunk(seq, data), "json")
        assert reply.status_code == 200 and reply.json()["stored"] is True

    logs = renter.get(_url(alice_lease, f"/{job['id']}/logs?offset=0&limit=12")).json()
    assert logs["data"] == "loss 1.0\nlos" and logs["next_offset"] == 12
    assert logs["finished"] is False
    rest = renter.get(_url(alice_lease, f"/{job['id']}/logs?offset=12")).json()
    assert rest["data"] == "s 0.5\nloss 0.2\n"

    result = tar_bytes({"out/model.ckpt": b"weights"})
    finished = agent.post(
        f"/api/v1/agent/workloads/{job['id']}/finish?outcome=exited&exit_code=0",
        data=result,
        content_type="application/gzip",
    )
    assert finished.status_code == 200 and finished.json()["state"] == "succeeded"
    detail = renter.get(_url(alice_lease, f"/{job['id']}")).json()
    assert (
        detail["exit_code"] == 0 and detail["has_results"] and detail["result_size"] == len(result)
    )
    tail = renter.get(_url(alice_lease, f"/{job['id']}/logs?offset={rest['next_offset']}"))
    assert tail.json()["finished"] is True and tail.json()["data"] == ""
    download = renter.get(_url(alice_lease, f"/{job['id']}/results"))
    assert b"".join(download.streaming_content) == result
    assert list(
        WorkloadEvent.objects.filter(workload_id=job["id"]).values_list("from_state", "to_state")
    ) == [("", "queued"), ("queued", "starting"), ("starting", "running"), ("running", "succeeded")]


def test_a_resent_log_chunk_is_stored_once_and_a_gap_is_refused(alice, alice_lease, bob_box):
    _, agent, _ = bob_box
    client_for(alice).post(_url(alice_lease), SPEC, format="json")
    job = agent.post("/api/v1/agent/workloads/next").json()
    agent.post(f"/api/v1/agent/workloads/{job['id']}/start")
    url = f"/api/v1/agent/workloads/{job['id']}/logs"
    assert agent.post(url, chunk(0, b"a"), "json").json()["stored"] is True
    again = agent.post(url, chunk(0, b"a"), "json")
    assert again.status_code == 200 and again.json() == {
        "id": job["id"],
        "state": "running",
        "log_next_seq": 1,
        "stored": False,
    }
    gap = agent.post(url, chunk(5, b"x"), "json")
    assert gap.status_code == 409
    assert gap.json()["error"]["code"] == "workloads_log_gap"
    assert gap.json()["error"]["detail"] == {"expected_seq": 1}
    assert WorkloadLogChunk.objects.count() == 1


def test_the_log_cap_keeps_the_first_bytes_and_says_it_cut(alice, alice_lease, bob_box, settings):
    settings.WORKLOAD_LOG_MAX_BYTES = 10
    _, agent, _ = bob_box
    client_for(alice).post(_url(alice_lease), SPEC, format="json")
    job = agent.post("/api/v1/agent/workloads/next").json()
    agent.post(f"/api/v1/agent/workloads/{job['id']}/start")
    url = f"/api/v1/agent/workloads/{job['id']}/logs"
    for seq in range(3):
        assert agent.post(url, chunk(seq, b"123456"), "json").status_code == 200
    logs = client_for(alice).get(_url(alice_lease, f"/{job['id']}/logs")).json()
    assert logs["data"] == "1234561234" and logs["truncated"] is True


def test_carol_cannot_see_or_use_alices_order(carol, alice_lease, settings):
    carol_client = client_for(carol)
    refused = carol_client.post(_url(alice_lease), SPEC, format="json")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "orders_not_found"
    assert carol_client.get(_url(alice_lease)).status_code == 404
    refused = _submit_multipart(carol_client, alice_lease, tar_bytes({"a": b"1"}))
    assert refused.status_code == 404
    assert _nothing_written(settings)


def test_a_workload_needs_an_active_lease(alice, bob_box, settings):
    order, _ = order_create(
        renter=alice,
        listing_id=bob_box[2].pk,
        pricing_mode="on_demand",
        accelerators=1,
        hours=1,
        idempotency_key="alice-unfunded-1",
    )
    refused = client_for(alice).post(_url(order), SPEC, format="json")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "workloads_order_not_active"
    assert _nothing_written(settings)


def test_an_oversized_archive_is_413(alice, alice_lease, settings):
    settings.WORKLOAD_INPUT_MAX_BYTES = 1000
    big = tar_bytes({"blob": bytes(range(256)) * 40}, gz=False)
    refused = _submit_multipart(client_for(alice), alice_lease, big)
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "workloads_archive_too_large"
    assert _nothing_written(settings)


def test_an_archive_that_unpacks_too_large_is_413(alice, alice_lease, settings):
    settings.WORKLOAD_INPUT_MAX_UNPACKED_BYTES = 10_000
    bomb = tar_bytes({"zeros": b"\0" * 1_000_000})
    assert len(bomb) < 10_000
    refused = _submit_multipart(client_for(alice), alice_lease, bomb)
    assert refused.status_code == 413
    assert _nothing_written(settings)


def _fifo_archive() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("pipe")
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    return out.getvalue()


@pytest.mark.parametrize(
    "archive",
    [
        pytest.param(tar_bytes({"/etc/cron.d/x": b"boom"}), id="absolute"),
        pytest.param(tar_bytes({"../../home/agent/.bashrc": b"boom"}), id="dotdot"),
        pytest.param(tar_bytes({"a/../../b": b"boom"}), id="dotdot-inside"),
        pytest.param(tar_bytes({}, links={"cred": "/home/agent/agent-config.json"}), id="abs-link"),
        pytest.param(tar_bytes({}, links={"d/up": "../../x"}), id="relative-link-out"),
        pytest.param(_fifo_archive(), id="fifo"),
        pytest.param(b"this is not a tar archive at all", id="not-tar"),
    ],
)
def test_an_archive_escaping_the_work_dir_is_400(alice, alice_lease, settings, archive):
    refused = _submit_multipart(client_for(alice), alice_lease, archive)
    assert refused.status_code == 400, refused.json()
    assert refused.json()["error"]["code"] == "workloads_bad_archive"
    assert _nothing_written(settings)


def test_a_link_inside_the_work_dir_is_fine(alice, alice_lease):
    archive = tar_bytes({"d/a.txt": b"1"}, links={"d/b.txt": "a.txt", "top": "d/a.txt"})
    assert _submit_multipart(client_for(alice), alice_lease, archive).status_code == 201


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({**SPEC, "time_limit": 5}, "time_limit"),
        ({**SPEC, "time_limit_seconds": 3 * 3600}, None),
        ({**SPEC, "time_limit_seconds": "60"}, "time_limit_seconds"),
        ({"argv": []}, "argv"),
        ({"argv": ["ls"], "env": {"CUDA_VISIBLE_DEVICES": "0,1"}}, "env"),
        ({"argv": ["ls"], "env": {"BAD NAME": "x"}}, "env"),
        ({"argv": ["ls"], "result_paths": ["/etc/passwd"]}, "result_paths"),
        ({"argv": ["ls"], "result_paths": ["../x"]}, "result_paths"),
        ({"argv": ["a\x00b"]}, "argv"),
    ],
)
def test_bad_specs_are_400_and_write_nothing(alice, alice_lease, settings, spec, field):
    refused = client_for(alice).post(_url(alice_lease), spec, format="json")
    assert refused.status_code == 400, refused.json()
    error = refused.json()["error"]
    if field is None:
        assert error["code"] == "workloads_time_limit_past_lease"
        assert 0 < error["detail"]["max_time_limit_seconds"] <= 2 * 3600
    else:
        assert error["code"] == "invalid_input" and field in error["detail"]
    assert _nothing_written(settings)


def test_unknown_multipart_fields_are_400(alice, alice_lease, settings):
    refused = _submit_multipart(
        client_for(alice), alice_lease, tar_bytes({"a": b"1"}), priority="high"
    )
    assert refused.status_code == 400 and "priority" in refused.json()["error"]["detail"]
    assert _nothing_written(settings)


def test_one_lease_runs_one_workload_at_a_time(alice, alice_lease, bob_box):
    _, agent, _ = bob_box
    renter = client_for(alice)
    first = renter.post(_url(alice_lease), SPEC, format="json").json()
    second = renter.post(_url(alice_lease), SPEC, format="json").json()
    assert agent.post("/api/v1/agent/workloads/next").json()["id"] == first["id"]
    # Handed out, not yet started: never handed out twice, and the lease's next one waits.
    assert agent.post("/api/v1/agent/workloads/next").status_code == 204
    agent.post(f"/api/v1/agent/workloads/{first['id']}/start")
    assert agent.post("/api/v1/agent/workloads/next").status_code == 204
    agent.post(f"/api/v1/agent/workloads/{first['id']}/finish?outcome=exited&exit_code=3")
    assert Workload.objects.get(pk=first["id"]).state == "failed"
    assert agent.post("/api/v1/agent/workloads/next").json()["id"] == second["id"]


def test_mallorys_agent_cannot_touch_bobs_workloads(alice, alice_lease, agent_of, mallory, bob_box):
    from tests.factories import ProviderFactory

    _, mallory_agent = agent_of(ProviderFactory(owner=mallory, wallet_address="0x" + "1" * 40))
    client_for(alice).post(_url(alice_lease), SPEC, format="json")
    assert mallory_agent.post("/api/v1/agent/workloads/next").status_code == 204
    workload = Workload.objects.get()
    for suffix in ("start", "ping", "finish?outcome=exited&exit_code=0"):
        reply = mallory_agent.post(f"/api/v1/agent/workloads/{workload.pk}/{suffix}")
        assert reply.status_code == 404, suffix
    assert mallory_agent.get(f"/api/v1/agent/workloads/{workload.pk}/input").status_code == 404
    assert client_for(alice).post(f"/api/v1/agent/workloads/{workload.pk}/start").status_code in (
        401,
        403,
    )
    workload.refresh_from_db()
    assert workload.state == "queued"


def test_an_oversized_result_is_413_and_the_workload_stays_running(
    alice, alice_lease, bob_box, settings
):
    settings.WORKLOAD_RESULT_MAX_BYTES = 100
    _, agent, _ = bob_box
    client_for(alice).post(_url(alice_lease), SPEC, format="json")
    job = agent.post("/api/v1/agent/workloads/next").json()
    agent.post(f"/api/v1/agent/workloads/{job['id']}/start")
    refused = agent.post(
        f"/api/v1/agent/workloads/{job['id']}/finish?outcome=exited&exit_code=0",
        data=b"\x1f\x8b" + b"x" * 200,
        content_type="application/gzip",
    )
    assert refused.status_code == 413
    assert Workload.objects.get(pk=job["id"]).state == "running"


def test_stopping_the_lease_cancels_its_workloads_and_the_agent_sees_it(
    alice, alice_lease, bob_box
):
    _, agent, _ = bob_box
    renter = client_for(alice)
    running = renter.post(_url(alice_lease), SPEC, format="json").json()
    queued = renter.post(_url(alice_lease), SPEC, format="json").json()
    agent.post("/api/v1/agent/workloads/next")
    agent.post(f"/api/v1/agent/workloads/{running['id']}/start")

    order_stop_by_renter(order_id=alice_lease.pk, user=alice)

    for workload_id in (running["id"], queued["id"]):
        workload = Workload.objects.get(pk=workload_id)
        assert workload.state == "cancelled"
        assert workload.reason == "lease ended: stopped_by_renter"
    reply = agent.post(f"/api/v1/agent/workloads/{running['id']}/logs", chunk(0, b"x"), "json")
    assert reply.json()["state"] == "cancelled" and reply.json()["stored"] is False
    ping = agent.post(f"/api/v1/agent/workloads/{running['id']}/ping")
    assert ping.json()["state"] == "cancelled"
    # The agent's late report of the exit changes nothing.
    agent.post(f"/api/v1/agent/workloads/{running['id']}/finish?outcome=exited&exit_code=137")
    assert Workload.objects.get(pk=running["id"]).state == "cancelled"


def test_a_workload_ending_is_announced_once_after_commit(alice, alice_lease, bob_box):
    from marketplace.workloads.signals import workload_ended

    heard = []
    workload_ended.connect(lambda sender, **kw: heard.append(kw), weak=False, dispatch_uid="t")
    try:
        _, agent, _ = bob_box
        workload = client_for(alice).post(_url(alice_lease), SPEC, format="json").json()
        agent.post("/api/v1/agent/workloads/next")
        agent.post(f"/api/v1/agent/workloads/{workload['id']}/start")
        assert heard == []
        for _ in range(2):  # a repeated report announces nothing more
            agent.post(f"/api/v1/agent/workloads/{workload['id']}/finish?outcome=timed_out")
    finally:
        workload_ended.disconnect(dispatch_uid="t")
    assert heard == [
        {
            "workload_id": workload["id"],
            "order_id": alice_lease.pk,
            "state": "timed_out",
            "reason": "time limit reached; killed",
            "signal": workload_ended,
        }
    ]


def test_a_machine_going_offline_loses_its_running_workloads(alice, alice_lease, bob_box):
    machine, agent, _ = bob_box
    renter = client_for(alice)
    running = renter.post(_url(alice_lease), SPEC, format="json").json()
    queued = renter.post(_url(alice_lease), SPEC, format="json").json()
    agent.post("/api/v1/agent/workloads/next")
    agent.post(f"/api/v1/agent/workloads/{running['id']}/start")
    Machine.objects.filter(pk=machine.pk).update(state=Machine.State.OFFLINE)
    orders_end_for_machine(machine_id=machine.pk, reason="machine offline")
    assert Workload.objects.get(pk=running["id"]).state == "lost"
    assert Workload.objects.get(pk=queued["id"]).state == "cancelled"


def test_a_silent_agent_loses_its_workload_to_the_sweep(alice, alice_lease, bob_box, settings):
    _, agent, _ = bob_box
    settings.WORKLOAD_SILENCE_SECONDS = 60
    workload = client_for(alice).post(_url(alice_lease), SPEC, format="json").json()
    agent.post("/api/v1/agent/workloads/next")
    agent.post(f"/api/v1/agent/workloads/{workload['id']}/start")
    assert workloads_sweep()["lost"] == []
    later = timezone.now() + timedelta(seconds=61)
    assert workloads_sweep(now=later)["lost"] == [workload["id"]]
    assert Workload.objects.get(pk=workload["id"]).reason == "the agent stopped reporting"


def test_the_sweep_closes_workloads_whose_lease_end_signal_was_lost(alice, alice_lease):
    from marketplace.orders.signals import order_ended

    workload = client_for(alice).post(_url(alice_lease), SPEC, format="json").json()
    assert order_ended.disconnect(dispatch_uid="workloads_order_ended")
    try:
        order_stop_by_renter(order_id=alice_lease.pk, user=alice)
    finally:
        from marketplace.workloads.receivers import on_order_ended

        order_ended.connect(on_order_ended, dispatch_uid="workloads_order_ended")
    assert Workload.objects.get(pk=workload["id"]).state == "queued"
    assert workloads_sweep()["closed"] == [workload["id"]]
    assert Workload.objects.get(pk=workload["id"]).state == "cancelled"


def test_alice_cancels_a_queued_workload(alice, carol, alice_lease):
    workload = client_for(alice).post(_url(alice_lease), SPEC, format="json").json()
    assert client_for(carol).post(_url(alice_lease, f"/{workload['id']}/cancel")).status_code == 404
    done = client_for(alice).post(_url(alice_lease, f"/{workload['id']}/cancel"))
    assert done.status_code == 200 and done.json()["state"] == "cancelled"
    again = client_for(alice).post(_url(alice_lease, f"/{workload['id']}/cancel"))
    assert again.status_code == 409


def test_two_leases_on_one_machine_get_different_devices(alice, carol, alice_lease, bob_box):
    _, agent, listing = bob_box
    carol_lease = active_order(carol, listing, key="carol-lease-0001")
    client_for(alice).post(_url(alice_lease), SPEC, format="json")
    client_for(carol).post(_url(carol_lease), SPEC, format="json")
    first = agent.post("/api/v1/agent/workloads/next").json()
    second = agent.post("/api/v1/agent/workloads/next").json()
    assert first["devices"] == [{"index": 0, "uuid": "GPU-a"}]
    assert second["devices"] == [{"index": 1, "uuid": "GPU-b"}]
