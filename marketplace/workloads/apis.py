import base64
import json
import tempfile

from django.core.files import File
from django.core.files.uploadhandler import FileUploadHandler, TemporaryFileUploadHandler
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.accounts.permissions import IsRenter
from marketplace.core.errors import ApplicationError, NotFoundError
from marketplace.core.parsers import SafeJSONParser
from marketplace.providers.apis import AgentApiMixin
from marketplace.workloads import selectors, services
from marketplace.workloads.models import Workload
from marketplace.workloads.serializers import (
    AgentFinishInputSerializer,
    AgentLogChunkInputSerializer,
    AgentStateSerializer,
    AgentWorkloadSerializer,
    WorkloadCreateInputSerializer,
    WorkloadLogOutputSerializer,
    WorkloadOutputSerializer,
)

# Room for the multipart envelope and the spec field around the archive itself.
_MULTIPART_OVERHEAD = 256 * 2**10
_LOG_READ_MAX = 256 * 2**10


def _too_large(what: str, cap: int) -> ApplicationError:
    return ApplicationError(
        f"The {what} is larger than {cap} bytes.",
        code=f"workloads_{what.replace(' ', '_')}_too_large",
        status_code=413,
        extra={"max_bytes": cap},
    )


def _refuse_declared_length(request, cap: int, what: str) -> None:
    """A body whose declared length is over the cap is refused before a byte of it is read."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > cap:
        raise _too_large(what, cap)


class _CappedUploadHandler(FileUploadHandler):
    """Counts the bytes of the uploaded files as they arrive and stops the request past the
    cap: a body sent without a Content-Length is not spooled to disk whole before the check."""

    def __init__(self, request=None, *, cap: int) -> None:
        super().__init__(request)
        self.cap, self.seen = cap, 0

    def receive_data_chunk(self, raw_data, start):
        self.seen += len(raw_data)
        if self.seen > self.cap:
            raise _too_large("archive", self.cap)
        return raw_data

    def file_complete(self, file_size):
        return None


def _read_capped_body(request, cap: int) -> File | None:
    """The raw request body, streamed to a temporary file and refused past `cap`."""
    _refuse_declared_length(request, cap, "result archive")
    # Closed by the caller once stored (or on refusal below), not by a with block here.
    spool = tempfile.SpooledTemporaryFile(max_size=4 * 2**20)  # noqa: SIM115
    size = 0
    while True:
        piece = request._request.read(64 * 2**10)
        if not piece:
            break
        size += len(piece)
        if size > cap:
            spool.close()
            raise _too_large("result archive", cap)
        spool.write(piece)
    if size == 0:
        spool.close()
        return None
    spool.seek(0)
    upload = File(spool, name="result.tar.gz")
    upload.size = size
    return upload


# --- the renter's API -------------------------------------------------------------------------


class WorkloadListCreateApi(ListAPIView):
    serializer_class = WorkloadOutputSerializer
    parser_classes = [SafeJSONParser, MultiPartParser]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Workload.objects.none()
        return selectors.workload_list_for(user=self.request.user, order_id=self.kwargs["order_id"])

    @extend_schema(
        request={
            "application/json": WorkloadCreateInputSerializer,
            "multipart/form-data": {
                "type": "object",
                "properties": {
                    "spec": {"type": "string", "description": "The JSON document as above."},
                    "archive": {"type": "string", "format": "binary"},
                },
            },
        },
        responses={201: WorkloadOutputSerializer},
    )
    def post(self, request, order_id: int):
        if not IsRenter().has_permission(request, self):
            self.permission_denied(request, message=IsRenter.message)
        cap = services.limit("INPUT_MAX_BYTES")
        archive = None
        if request.content_type.startswith("multipart/"):
            _refuse_declared_length(request, cap + _MULTIPART_OVERHEAD, "archive")
            request._request.upload_handlers = [
                _CappedUploadHandler(request._request, cap=cap),
                TemporaryFileUploadHandler(request._request),
            ]
            unknown = sorted(set(request.data) - {"spec", "archive"})
            unknown_files = sorted(set(request.FILES) - {"archive"})
            if unknown or unknown_files:
                raise ApplicationError(
                    "The input is not valid.",
                    code="invalid_input",
                    extra={name: ["Unknown field."] for name in unknown + unknown_files},
                )
            try:
                spec = json.loads(request.data.get("spec") or "{}")
            except ValueError as exc:
                raise ApplicationError(
                    f"The spec field is not JSON: {exc}", code="invalid_input"
                ) from None
            archive = request.FILES.get("archive")
        else:
            spec = request.data
        data = WorkloadCreateInputSerializer(data=spec)
        data.is_valid(raise_exception=True)
        workload = services.workload_submit(
            user=request.user, order_id=order_id, archive=archive, **data.validated_data
        )
        return Response(WorkloadOutputSerializer(workload).data, status=status.HTTP_201_CREATED)


class WorkloadDetailApi(APIView):
    @extend_schema(responses=WorkloadOutputSerializer)
    def get(self, request, order_id: int, workload_id: int):
        workload = selectors.workload_get_for(
            user=request.user, order_id=order_id, workload_id=workload_id
        )
        return Response(WorkloadOutputSerializer(workload).data)


class WorkloadLogsApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("offset", OpenApiTypes.INT, description="Byte offset to read from."),
            OpenApiParameter("limit", OpenApiTypes.INT, description="At most this many bytes."),
        ],
        responses=WorkloadLogOutputSerializer,
    )
    def get(self, request, order_id: int, workload_id: int):
        workload = selectors.workload_get_for(
            user=request.user, order_id=order_id, workload_id=workload_id
        )
        offset = _query_int(request, "offset", 0, maximum=2**62)
        limit = _query_int(request, "limit", _LOG_READ_MAX, maximum=_LOG_READ_MAX, minimum=1)
        data, next_offset = selectors.workload_log_read(
            workload=workload, offset=offset, limit=limit
        )
        return Response(
            {
                "offset": offset,
                "next_offset": next_offset,
                "data": data.decode("utf-8", errors="replace"),
                "data_b64": base64.b64encode(data).decode(),
                # Finished: the workload ended and this read reached the end of what was stored.
                "finished": workload.state in Workload.FINAL and next_offset >= workload.log_bytes,
                "truncated": workload.log_truncated,
                "state": workload.state,
            }
        )


def _query_int(request, name: str, default: int, *, maximum: int, minimum: int = 0) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise ApplicationError(
            f"{name} is an integer from {minimum} to {maximum}.", code="invalid_input"
        )
    return int(raw)


class WorkloadCancelApi(APIView):
    @extend_schema(request=None, responses=WorkloadOutputSerializer)
    def post(self, request, order_id: int, workload_id: int):
        workload = services.workload_cancel(
            user=request.user, order_id=order_id, workload_id=workload_id
        )
        return Response(WorkloadOutputSerializer(workload).data)


class WorkloadResultsApi(APIView):
    @extend_schema(responses={(200, "application/gzip"): OpenApiTypes.BINARY})
    def get(self, request, order_id: int, workload_id: int):
        workload = selectors.workload_get_for(
            user=request.user, order_id=order_id, workload_id=workload_id
        )
        if not workload.result_archive:
            raise NotFoundError(
                "This workload has no results (yet).",
                code="workloads_no_results",
                extra={"state": workload.state},
            )
        return FileResponse(
            workload.result_archive.open("rb"),
            as_attachment=True,
            filename=f"workload-{workload.pk}-results.tar.gz",
            content_type="application/gzip",
        )


# --- the agent's API --------------------------------------------------------------------------


def _agent_state(workload: Workload, **extra) -> Response:
    return Response(
        AgentStateSerializer(
            {"id": workload.pk, "state": workload.state, "log_next_seq": workload.log_next_seq}
            | extra
        ).data
    )


class AgentWorkloadNextApi(AgentApiMixin, APIView):
    """A plain request the agent repeats every few seconds (no long poll here: the agent's long
    polls are served by the ASGI channel)."""

    @extend_schema(request=None, responses={200: AgentWorkloadSerializer, 204: None})
    def post(self, request):
        workload = services.workload_claim_next(machine_id=request.user.machine_id)
        if workload is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(AgentWorkloadSerializer(workload).data)


class AgentWorkloadDetailApi(AgentApiMixin, APIView):
    @extend_schema(responses=AgentWorkloadSerializer)
    def get(self, request, workload_id: int):
        workload = selectors.workload_get_for_machine(
            machine_id=request.user.machine_id, workload_id=workload_id
        )
        return Response(AgentWorkloadSerializer(workload).data)


class AgentWorkloadInputApi(AgentApiMixin, APIView):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, workload_id: int):
        workload = selectors.workload_get_for_machine(
            machine_id=request.user.machine_id, workload_id=workload_id
        )
        if not workload.input_archive or workload.state not in Workload.LIVE:
            raise NotFoundError("No input to fetch.", code="workloads_no_input")
        return FileResponse(
            workload.input_archive.open("rb"), content_type="application/octet-stream"
        )


class AgentWorkloadStartApi(AgentApiMixin, APIView):
    @extend_schema(request=None, responses=AgentStateSerializer)
    def post(self, request, workload_id: int):
        workload = services.workload_start(
            machine_id=request.user.machine_id, workload_id=workload_id
        )
        return _agent_state(workload)


class AgentWorkloadPingApi(AgentApiMixin, APIView):
    @extend_schema(request=None, responses=AgentStateSerializer)
    def post(self, request, workload_id: int):
        workload = services.workload_ping(
            machine_id=request.user.machine_id, workload_id=workload_id
        )
        return _agent_state(workload)


class AgentWorkloadLogApi(AgentApiMixin, APIView):
    @extend_schema(request=AgentLogChunkInputSerializer, responses=AgentStateSerializer)
    def post(self, request, workload_id: int):
        data = AgentLogChunkInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            raw = base64.b64decode(data.validated_data["data_b64"], validate=True)
        except ValueError:
            raise ApplicationError("data_b64 is not base64.", code="invalid_input") from None
        workload, stored = services.workload_log_append(
            machine_id=request.user.machine_id,
            workload_id=workload_id,
            seq=data.validated_data["seq"],
            stream=data.validated_data["stream"],
            data=raw,
        )
        return _agent_state(workload, stored=stored)


class AgentWorkloadFinishApi(AgentApiMixin, APIView):
    """The end of a workload: outcome, exit_code and reason in the query, the result archive
    (tar.gz, possibly empty) as the raw body."""

    @extend_schema(
        parameters=[AgentFinishInputSerializer],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses=AgentStateSerializer,
    )
    def post(self, request, workload_id: int):
        params = {k: v for k, v in request.query_params.items()}
        if "exit_code" in params:
            raw = params["exit_code"]
            params["exit_code"] = int(raw) if raw.lstrip("-").isdigit() else raw
        data = AgentFinishInputSerializer(data=params)
        data.is_valid(raise_exception=True)
        # Checked before the body is read: another machine's workload is a 404, not an upload.
        selectors.workload_get_for_machine(
            machine_id=request.user.machine_id, workload_id=workload_id
        )
        result = _read_capped_body(request, services.limit("RESULT_MAX_BYTES"))
        try:
            workload = services.workload_finish(
                machine_id=request.user.machine_id,
                workload_id=workload_id,
                outcome=data.validated_data["outcome"],
                exit_code=data.validated_data.get("exit_code"),
                reason=data.validated_data.get("reason", ""),
                result=result,
            )
        finally:
            if result is not None:
                result.close()
        return _agent_state(workload)
