import zlib
from functools import partial

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.benchmarks import selectors, services, wakeups
from marketplace.benchmarks.models import BenchmarkJob
from marketplace.benchmarks.serializers import (
    AgentJobOutputSerializer,
    AnswerInputSerializer,
    ChallengeOutputSerializer,
    CommitmentInputSerializer,
    JobStatusOutputSerializer,
    MachineBenchmarksOutputSerializer,
    ReportHashSerializer,
    ReportOutputSerializer,
    SketchInputSerializer,
    WaitQuerySerializer,
)
from marketplace.core.db_pool import in_db_thread
from marketplace.core.exceptions import error_body
from marketplace.providers import services as provider_services
from marketplace.providers.apis import AgentApiMixin, agent_channel_serve
from marketplace.providers.models import Machine
from workers.verification import MAX_ANSWER_BYTES

_WAIT = OpenApiParameter(
    "wait",
    int,
    description=(
        "Long-poll for up to this many seconds (0..25). A wait of 5 s or more ends at 70-100% of"
        " it, at a moment of the machine's own, so a fleet's polls do not arrive in waves."
    ),
)
# Says how a long poll ended: "initial" (found at once), "event" (woken by the job's change),
# "timeout" (the wait ran out). For operators and tests, not for agents.
WAIT_HEADER = "Agent-Wait"


def _wait_seconds(request) -> int:
    data = WaitQuerySerializer(data=request.query_params)
    data.is_valid(raise_exception=True)
    return min(data.validated_data["wait"], settings.BENCHMARK_LONG_POLL_MAX_SECONDS)


def _job_to_deliver(machine_id: int) -> dict | None:
    """The job the machine's agent should work on, serialised. A job dispatched but not yet
    committed is handed out again: its agent lost the reply or restarted, and the deadline set
    at the first dispatch still runs, so a repeat gains it nothing. Each read also counts as the
    machine's heartbeat (machine_seen_polling)."""
    state, has_job = selectors.machine_poll_state(machine_id=machine_id)
    came_back = provider_services.machine_seen_polling(machine_id=machine_id, state=state)
    if not has_job and not came_back and state != Machine.State.REGISTERED:
        # Nothing queued or out, and no onboarding to start: the answer of the full path below,
        # in one query instead of its eight.
        return None
    job = selectors.benchmark_job_dispatched_for(machine_id=machine_id)
    if job is None:
        job = services.benchmark_dispatch_next(machine_id=machine_id)
    if job is None:
        return None
    # Tells a one-device agent not to poll again before it starts: that round trip would sit
    # inside the job's server-timed span.
    more = services.queued_for_free_devices(machine_id).exists()
    return AgentJobOutputSerializer(job, context={"more_jobs": more}).data


def _challenge_or_end(job_id: int, machine_id: int) -> BenchmarkJob | None:
    job = selectors.benchmark_job_get_for_agent(job_id=job_id, machine_id=machine_id)
    if job.state in BenchmarkJob.FINAL_STATES or job.challenge is not None:
        return job
    return None


def _challenge_response(job: BenchmarkJob | None, how: str) -> Response:
    if job is None:
        response = Response(status=status.HTTP_204_NO_CONTENT)
    elif job.state in (BenchmarkJob.State.REJECTED, BenchmarkJob.State.EXPIRED):
        response = _outcome_response(job, status.HTTP_200_OK)
    else:
        response = Response(ChallengeOutputSerializer(job).data)
    response[WAIT_HEADER] = how
    return response


def _next_response(data: dict | None, how: str) -> Response:
    response = Response(status=status.HTTP_204_NO_CONTENT) if data is None else Response(data)
    response[WAIT_HEADER] = how
    return response


def _read_body(request, cap: int) -> bytes:
    # Read at most cap + 1 bytes straight from the stream: DRF's parser would accept NaN and
    # Django's request.body would buffer whatever the client claims to send.
    body = request._request.read(cap + 1)
    # The agent gzips its answer (Content-Encoding: gzip; the magic bytes alone suffice, as no
    # JSON text starts with 0x1f). Decompress at most cap + 1 bytes: a bomb then reads as an
    # over-limit payload and a corrupt stream as non-JSON, both "malformed_*" rejections by
    # the services, never a 500 and never unbounded memory.
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip"):
        return b""
    if encoding == "gzip" or body[:2] == b"\x1f\x8b":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            return inflater.decompress(body, cap + 1)
        except zlib.error:
            return b""
    return body


def _outcome_response(job: BenchmarkJob, ok_status: int) -> Response:
    if job.state == BenchmarkJob.State.REJECTED:
        return Response(
            error_body(
                "benchmarks_job_rejected",
                f"Job {job.pk} was rejected: {job.outcome_reason}.",
                {"reason": job.outcome_reason, "detail": job.outcome_detail},
            ),
            status=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    if job.state == BenchmarkJob.State.EXPIRED:
        return Response(
            error_body(
                "benchmarks_job_expired",
                f"Job {job.pk} expired: {job.outcome_reason}.",
                {"reason": job.outcome_reason},
            ),
            status=status.HTTP_409_CONFLICT,
        )
    return Response(JobStatusOutputSerializer(job).data, status=ok_status)


class AgentJobNextApi(AgentApiMixin, APIView):
    @extend_schema(
        parameters=[_WAIT],
        responses={200: AgentJobOutputSerializer, 204: OpenApiResponse(description="No job")},
    )
    def get(self, request):
        # Served by the WSGI server: the wait holds this thread (the ASGI agent channel below
        # holds none), but it waits on the machine's wake-up channel, not by polling.
        machine_id = request.user.machine_id
        data, how = wakeups.wait_sync(
            machine_id, _wait_seconds(request), partial(_job_to_deliver, machine_id)
        )
        if data is None and how == wakeups.FOUND_LAST:  # waited in vain; a read records itself
            provider_services.machine_seen_waiting(machine_id=machine_id)
        return _next_response(data, how)


class AgentJobCommitmentApi(AgentApiMixin, APIView):
    @extend_schema(request=CommitmentInputSerializer, responses={202: JobStatusOutputSerializer})
    def post(self, request, job_id: int):
        received_at = timezone.now()
        job = services.benchmark_commit(
            job_id=job_id,
            machine_id=request.user.machine_id,
            payload=_read_body(request, services.MAX_COMMITMENT_BYTES),
            received_at=received_at,
        )
        return _outcome_response(job, status.HTTP_202_ACCEPTED)


class AgentJobSketchApi(AgentApiMixin, APIView):
    @extend_schema(request=SketchInputSerializer, responses={202: JobStatusOutputSerializer})
    def post(self, request, job_id: int):
        received_at = timezone.now()
        job = services.benchmark_submit_sketch(
            job_id=job_id,
            machine_id=request.user.machine_id,
            payload=_read_body(request, services.MAX_SKETCH_BODY_BYTES),
            received_at=received_at,
        )
        return _outcome_response(job, status.HTTP_202_ACCEPTED)


class AgentJobChallengeApi(AgentApiMixin, APIView):
    @extend_schema(
        parameters=[_WAIT],
        responses={
            200: ChallengeOutputSerializer,
            204: OpenApiResponse(description="Not issued yet"),
        },
    )
    def get(self, request, job_id: int):
        machine_id = request.user.machine_id
        job, how = wakeups.wait_sync(
            machine_id, _wait_seconds(request), partial(_challenge_or_end, job_id, machine_id)
        )
        return _challenge_response(job, how)


class AgentJobAnswerApi(AgentApiMixin, APIView):
    @extend_schema(request=AnswerInputSerializer, responses={202: JobStatusOutputSerializer})
    def post(self, request, job_id: int):
        received_at = timezone.now()
        job = services.benchmark_submit_answer(
            job_id=job_id,
            machine_id=request.user.machine_id,
            payload=_read_body(request, MAX_ANSWER_BYTES),
            received_at=received_at,
        )
        return _outcome_response(job, status.HTTP_202_ACCEPTED)


class AgentJobDetailApi(AgentApiMixin, APIView):
    @extend_schema(responses=JobStatusOutputSerializer)
    def get(self, request, job_id: int):
        job = selectors.benchmark_job_get_for_agent(
            job_id=job_id, machine_id=request.user.machine_id
        )
        return Response(JobStatusOutputSerializer(job).data)


class MachineBenchmarksApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=MachineBenchmarksOutputSerializer)
    def get(self, request, machine_id: int):
        data = selectors.machine_benchmarks_for(user=request.user, machine_id=machine_id)
        return Response(MachineBenchmarksOutputSerializer(data).data)


class ReportDetailApi(APIView):
    """Public: a verdict's report is evidence anyone may audit (benchmarks/audit.py)."""

    permission_classes = [AllowAny]

    @extend_schema(responses=ReportOutputSerializer)
    def get(self, request, report_hash: str):
        data = ReportHashSerializer(data={"report_hash": report_hash})
        data.is_valid(raise_exception=True)
        digest = data.validated_data["report_hash"].lower().removeprefix("0x")
        return Response(ReportOutputSerializer(selectors.report_get(report_hash=digest)).data)


# --- the ASGI agent channel ---------------------------------------------------------------------
# The same two long polls as coroutines (marketplace/asgi.py routes them here): authentication,
# throttles and errors are the DRF views' own (agent_channel_serve), database reads run in a
# small shared pool, and the wait itself is an asyncio.Event set by the machine's wake-up.


async def agent_job_next_channel(request):
    async def handle(view, drf_request):
        machine_id = drf_request.user.machine_id
        data, how = await wakeups.wait_async(
            machine_id, _wait_seconds(drf_request), partial(_job_to_deliver, machine_id)
        )
        if data is None and how == wakeups.FOUND_LAST:  # waited in vain; a read records itself
            await in_db_thread(provider_services.machine_seen_waiting, machine_id=machine_id)
        return _next_response(data, how)

    return await agent_channel_serve(AgentJobNextApi, request, handle)


async def agent_job_challenge_channel(request, job_id: int):
    async def handle(view, drf_request):
        machine_id = drf_request.user.machine_id
        job, how = await wakeups.wait_async(
            machine_id, _wait_seconds(drf_request), partial(_challenge_or_end, job_id, machine_id)
        )
        # Serialising may read the database: not on the event loop.
        return await wakeups.in_db_thread(_challenge_response, job, how)

    return await agent_channel_serve(AgentJobChallengeApi, request, handle, job_id=job_id)
