import posixpath
import re

from rest_framework import serializers

from marketplace.listings.serializers import StrictIntegerField
from marketplace.workloads.models import Workload

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Set by the sandbox to the leased devices; a renter who sets them could reach other leases'.
_RESERVED_ENV = {
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL",
}


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know: a typo ("time_limit") must not silently become the
    default."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise serializers.ValidationError("NUL characters are not allowed.")
    return value


class WorkloadCreateInputSerializer(StrictSerializer):
    argv = serializers.ListField(
        child=serializers.CharField(max_length=4096, trim_whitespace=False, validators=[_no_nul]),
        min_length=1,
        max_length=256,
    )
    env = serializers.DictField(
        child=serializers.CharField(
            max_length=4096, allow_blank=True, trim_whitespace=False, validators=[_no_nul]
        ),
        required=False,
    )
    result_paths = serializers.ListField(
        child=serializers.CharField(max_length=512, validators=[_no_nul]),
        required=False,
        max_length=64,
    )
    time_limit_seconds = StrictIntegerField(min_value=1, max_value=10**8, required=False)

    def validate_env(self, env):
        if len(env) > 64:
            raise serializers.ValidationError("At most 64 variables.")
        for name in env:
            if not _ENV_NAME.match(name):
                raise serializers.ValidationError(f"{name[:40]!r} is not a variable name.")
            if name in _RESERVED_ENV:
                raise serializers.ValidationError(
                    f"{name} is set by the sandbox to the lease's devices."
                )
        return env

    def validate_result_paths(self, paths):
        for path in paths:
            normal = posixpath.normpath(path)
            if normal.startswith("/") or normal == ".." or normal.startswith("../"):
                raise serializers.ValidationError(
                    f"{path[:80]!r} is outside the work directory: result paths are relative."
                )
        return paths


class WorkloadOutputSerializer(serializers.ModelSerializer):
    order_id = serializers.IntegerField()
    has_results = serializers.SerializerMethodField()

    class Meta:
        model = Workload
        fields = [
            "id",
            "order_id",
            "state",
            "reason",
            "argv",
            "env",
            "result_paths",
            "time_limit_seconds",
            "network",
            "input_size",
            "input_sha256",
            "exit_code",
            "has_results",
            "result_size",
            "log_bytes",
            "log_truncated",
            "created_at",
            "claimed_at",
            "started_at",
            "deadline_at",
            "finished_at",
        ]

    def get_has_results(self, workload) -> bool:
        return bool(workload.result_archive)


class WorkloadLogOutputSerializer(serializers.Serializer):
    offset = serializers.IntegerField()
    next_offset = serializers.IntegerField()
    data = serializers.CharField(help_text="The bytes, decoded as UTF-8 with replacement.")
    data_b64 = serializers.CharField(help_text="The same bytes, base64.")
    finished = serializers.BooleanField()
    truncated = serializers.BooleanField()
    state = serializers.CharField()


class AgentWorkloadSerializer(serializers.ModelSerializer):
    """What the agent needs to run a workload."""

    order_id = serializers.IntegerField()
    lease_id = serializers.CharField(source="order.lease_id")
    has_input = serializers.SerializerMethodField()
    seconds_left = serializers.SerializerMethodField()
    devices = serializers.SerializerMethodField()

    class Meta:
        model = Workload
        fields = [
            "id",
            "order_id",
            "lease_id",
            "state",
            "argv",
            "env",
            "result_paths",
            "network",
            "has_input",
            "input_size",
            "input_sha256",
            "deadline_at",
            "seconds_left",
            "devices",
            "log_next_seq",
        ]

    def get_has_input(self, workload) -> bool:
        return bool(workload.input_archive)

    def get_seconds_left(self, workload) -> int | None:
        from django.utils import timezone

        if workload.deadline_at is None:
            return None
        return max(0, int((workload.deadline_at - timezone.now()).total_seconds()))

    def get_devices(self, workload) -> list[dict]:
        from marketplace.workloads.selectors import workload_devices

        return workload_devices(order=workload.order)


class AgentLogChunkInputSerializer(StrictSerializer):
    seq = StrictIntegerField(min_value=0, max_value=10**9)
    stream = serializers.ChoiceField(choices=["stdout", "stderr"])
    data_b64 = serializers.CharField(allow_blank=True, max_length=200_000, trim_whitespace=False)


class AgentFinishInputSerializer(StrictSerializer):
    outcome = serializers.ChoiceField(choices=["exited", "timed_out", "error"])
    exit_code = StrictIntegerField(min_value=-255, max_value=255, required=False, allow_null=True)
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True)


class AgentStateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    log_next_seq = serializers.IntegerField()
    stored = serializers.BooleanField(required=False)
