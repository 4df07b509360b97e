import time
import zlib

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.benchmarks import selectors, services
from marketplace.benchmarks.models import BenchmarkJob
from marketplace.benchmarks.serializers import (
    AgentJobOutputSerializer,
    AnswerInputSerializer,
    ChallengeOutputSerializer,
    CommitmentInputSerializer,
    JobStatusOutputSerializer,
    MachineBenchmarksOutputSerializer,
    WaitQuerySerializer,
)
from marketplace.core.exceptions import error_body
from marketplace.providers.apis import AgentApiMixin
from workers.verification import MAX_ANSWER_BYTES

_POLL_INTERVAL_SECONDS = 0.25
_WAIT = OpenApiParameter("wait", int, description="Long-poll for up to this many seconds (0..25)")


def _wait_seconds(request) -> int:
    data = WaitQuerySerializer(data=request.query_params)
    data.is_valid(raise_exception=True)
    return min(data.validated_data["wait"], settings.BENCHMARK_LONG_POLL_MAX_SECONDS)


def _long_poll(wait: int, attempt):
    """Calls attempt() until it returns something or `wait` seconds pass. It holds one web
    thread while it waits: the price of an agent that needs no inbound connection."""
    give_up = time.monotonic() + wait
    while True:
        found = attempt()
        if found is not None or time.monotonic() >= give_up:
            return found
        time.sleep(_POLL_INTERVAL_SECONDS)


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
        machine_id = request.user.machine_id
        job = _long_poll(
            _wait_seconds(request),
            lambda: services.benchmark_dispatch_next(machine_id=machine_id),
        )
        if job is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(AgentJobOutputSerializer(job).data)


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

        def attempt():
            job = selectors.benchmark_job_get_for_agent(job_id=job_id, machine_id=machine_id)
            if job.state in BenchmarkJob.FINAL_STATES or job.challenge is not None:
                return job
            return None

        job = _long_poll(_wait_seconds(request), attempt)
        if job is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        if job.state in (BenchmarkJob.State.REJECTED, BenchmarkJob.State.EXPIRED):
            return _outcome_response(job, status.HTTP_200_OK)
        return Response(ChallengeOutputSerializer(job).data)


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
