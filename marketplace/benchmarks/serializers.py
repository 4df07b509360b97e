from rest_framework import serializers

from marketplace.benchmarks.models import BenchmarkJob


class WaitQuerySerializer(serializers.Serializer):
    wait = serializers.IntegerField(min_value=0, max_value=25, required=False, default=0)


class AgentJobOutputSerializer(serializers.ModelSerializer):
    """What the agent receives on dispatch: the seed is in it, so only ever for a dispatched job
    of the asking machine."""

    more_jobs = serializers.SerializerMethodField(
        help_text="Whether another device of this machine has a job waiting: poll again at "
        "once for it (one job per device; the agent runs them side by side)"
    )

    class Meta:
        model = BenchmarkJob
        fields = [
            "id",
            "kind",
            "precision",
            "spec",
            "seed",
            "device_index",
            "dispatched_at",
            "deadline",
            "more_jobs",
        ]

    def get_more_jobs(self, job: BenchmarkJob) -> bool:
        return bool(self.context.get("more_jobs", False))


class CommitmentInputSerializer(serializers.Serializer):
    """Documentation only: the view parses the raw body itself (strict JSON, no NaN)."""

    root = serializers.CharField(min_length=64, max_length=64)
    agent_seconds = serializers.FloatField()
    device = serializers.CharField(
        max_length=128, help_text="UUID or PCI bus id of the device that ran the job"
    )


class SketchPayloadSerializer(serializers.Serializer):
    protocol = serializers.CharField(help_text='"chain-sketch/v1"')
    job = serializers.CharField(help_text="32 hex characters naming the job (spec and seed)")
    shape = serializers.ListField(
        child=serializers.IntegerField(), help_text="[units, values per unit]"
    )
    y = serializers.CharField(
        help_text="The sketch Y = X_L . V: little-endian float32 values, base64 (<= 160 KiB "
        "before encoding)"
    )


class SketchInputSerializer(serializers.Serializer):
    """Documentation only: the view reads the raw body (at most 220 KB) and the service parses
    it strictly (no NaN, depth-bounded) and holds it to the job's own sizes."""

    sketch = SketchPayloadSerializer()
    agent_seconds = serializers.FloatField(help_text="The agent's own timing, seconds")
    device = serializers.CharField(
        max_length=128, help_text="UUID or PCI bus id of the device that ran the job"
    )


class AnswerInputSerializer(serializers.Serializer):
    """Documentation only: the raw body goes, size-capped, to the protocol's own parser."""

    y = serializers.ListField(child=serializers.IntegerField())
    rows = serializers.ListField(child=serializers.DictField(), required=False)
    planes = serializers.ListField(child=serializers.DictField(), required=False)


class ChallengeOutputSerializer(serializers.Serializer):
    job_id = serializers.IntegerField(source="pk")
    challenge = serializers.JSONField()
    deadline = serializers.DateTimeField()


class JobStatusOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = BenchmarkJob
        fields = [
            "id",
            "purpose",
            "kind",
            "precision",
            "spec",
            "state",
            "dispatched_at",
            "deadline",
            "committed_at",
            "challenged_at",
            "answer_received_at",
            "finished_at",
            "outcome_reason",
            "outcome_detail",
            "report_hash",
            "device_index",
            "device_uuid",
            "agent_seconds",
            "measured_seconds",
            "measured_tflops",
        ]


class ScoreSerializer(serializers.Serializer):
    kind = serializers.CharField()
    precision = serializers.CharField()
    best_tflops = serializers.FloatField()
    last_tflops = serializers.FloatField()
    last_verified_at = serializers.DateTimeField()
    verified_jobs = serializers.IntegerField()


class ReputationSerializer(serializers.Serializer):
    recent_jobs = serializers.IntegerField()
    passed_jobs = serializers.IntegerField()
    pass_ratio = serializers.FloatField(allow_null=True)
    uptime_samples = serializers.IntegerField()
    uptime_ratio = serializers.FloatField(allow_null=True)
    score = serializers.FloatField(allow_null=True)


class MachineBenchmarksOutputSerializer(serializers.Serializer):
    machine_id = serializers.IntegerField()
    state = serializers.CharField()
    scores = ScoreSerializer(many=True)
    reputation = ReputationSerializer()
    recent_jobs = JobStatusOutputSerializer(many=True)


class ReportHashSerializer(serializers.Serializer):
    report_hash = serializers.RegexField(
        r"^(0x)?[0-9a-fA-F]{64}$",
        help_text="The report's SHA-256, as cited on chain: 64 hex characters, 0x optional",
    )


class ReportOutputSerializer(serializers.Serializer):
    report_hash = serializers.CharField(help_text="0x + the SHA-256 of the document")
    kind = serializers.CharField(help_text="pass, fail or liveness")
    passed = serializers.BooleanField()
    penalised = serializers.BooleanField(help_text="Counted against the machine (slashed)")
    reason = serializers.CharField(help_text="The rejection's reason code; empty for a pass")
    machine_id = serializers.IntegerField()
    job_id = serializers.IntegerField(allow_null=True)
    order_ids = serializers.ListField(child=serializers.IntegerField())
    decided_at = serializers.DateTimeField(help_text="UTC")
    document = serializers.JSONField(
        help_text="The report: its canonical JSON (sorted keys, no spaces) hashes to report_hash"
    )
    evidence = serializers.JSONField(
        allow_null=True, help_text="The agent's answer that was judged (failures only)"
    )
