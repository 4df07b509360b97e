from rest_framework import serializers

from marketplace.providers.models import Machine, Provider

_NAME = {"max_length": 100, "allow_blank": False}


class ProviderInputSerializer(serializers.Serializer):
    name = serializers.CharField(**_NAME)
    wallet_address = serializers.CharField(max_length=42)


class ProviderOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Provider
        fields = ["id", "name", "wallet_address", "created_at"]


class RegistrationTokenOutputSerializer(serializers.Serializer):
    registration_token = serializers.CharField()
    expires_at = serializers.DateTimeField()


class AcceleratorSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Machine.AcceleratorKind.choices)
    vendor = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    model = serializers.CharField(max_length=100)
    memory_gb = serializers.IntegerField(min_value=0, max_value=4096, required=False, default=0)
    source = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")


class CpuSerializer(serializers.Serializer):
    vendor = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    model = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    cores = serializers.IntegerField(min_value=0, max_value=4096, required=False, default=0)


class HardwareSerializer(serializers.Serializer):
    accelerators = AcceleratorSerializer(many=True, required=False, default=list)
    cpu = CpuSerializer(required=False, default=dict)
    ram_gib = serializers.IntegerField(min_value=0, max_value=1 << 20, required=False, default=0)
    backends = serializers.ListField(
        child=serializers.ChoiceField(choices=["numpy", "torch", "torch-cuda", "cupy"]),
        max_length=8,
        required=False,
        default=list,
    )

    def validate_accelerators(self, value):
        if len(value) > 64:
            raise serializers.ValidationError("At most 64 accelerators per machine.")
        kinds = {(a["kind"], a["model"]) for a in value}
        if len(kinds) > 1:
            raise serializers.ValidationError(
                "A machine lists one accelerator kind and model; register mixed boxes as several."
            )
        return value


class AgentRegisterInputSerializer(serializers.Serializer):
    registration_token = serializers.CharField(max_length=200)
    name = serializers.CharField(**_NAME)
    hardware = HardwareSerializer()
    agent_version = serializers.CharField(
        max_length=40, required=False, allow_blank=True, default=""
    )


class AgentRegisterOutputSerializer(serializers.Serializer):
    machine_id = serializers.IntegerField()
    credential = serializers.CharField()


class MachineOutputSerializer(serializers.ModelSerializer):
    provider_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Machine
        fields = [
            "id",
            "provider_id",
            "name",
            "state",
            "state_reason",
            "state_changed_at",
            "accelerator_kind",
            "accelerator_vendor",
            "accelerator_model",
            "accelerator_count",
            "accelerator_memory_gb",
            "vcpu_count",
            "ram_gib",
            "backends",
            "hardware",
            "agent_version",
            "last_heartbeat_at",
            "created_at",
        ]


class HeartbeatOutputSerializer(serializers.Serializer):
    machine_id = serializers.IntegerField()
    state = serializers.CharField()
    server_time = serializers.DateTimeField()


class SuspendInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500)
