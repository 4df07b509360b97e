from django.conf import settings
from django.db import models

from marketplace.core.models import TimestampedModel


class Provider(TimestampedModel):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="providers"
    )
    name = models.CharField(max_length=100)
    # EIP-55 checksummed; payouts, stakes and slashes on chain are tied to this address.
    wallet_address = models.CharField(max_length=42, db_index=True)

    def __str__(self) -> str:
        return self.name


class RegistrationToken(TimestampedModel):
    """One-time secret an agent exchanges for its own credential. Stored hashed."""

    provider = models.ForeignKey(
        Provider, on_delete=models.CASCADE, related_name="registration_tokens"
    )
    key_hash = models.CharField(max_length=64, unique=True)
    display_prefix = models.CharField(max_length=16)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    machine = models.OneToOneField(
        "Machine", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )


class Machine(TimestampedModel):
    class State(models.TextChoices):
        REGISTERED = "registered"
        VERIFIED = "verified"
        LISTED = "listed"
        SUSPENDED = "suspended"
        OFFLINE = "offline"
        # Back from offline: a verification job is scheduled, and the machine returns to
        # resume_state (verified or listed) only when it passes.
        REVERIFYING = "reverifying"

    class AcceleratorKind(models.TextChoices):
        GPU = "gpu", "GPU"
        TPU = "tpu", "TPU"
        INFERENCE_ASIC = "inference_asic", "NeuronCore-class inference ASIC"
        FPGA = "fpga", "FPGA"
        IPU = "ipu", "IPU"
        CPU = "cpu", "CPU"

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="machines")
    name = models.CharField(max_length=100)
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.REGISTERED, db_index=True
    )
    # Where a machine returns when heartbeats resume after it was marked offline (through
    # `reverifying` when that is verified or listed), and while it is reverifying.
    resume_state = models.CharField(max_length=20, choices=State.choices, blank=True)
    state_reason = models.TextField(blank=True)
    state_changed_at = models.DateTimeField(null=True, blank=True)

    # What the agent detected; the summary fields below are derived from it at registration.
    hardware = models.JSONField(default=dict)
    accelerator_kind = models.CharField(max_length=20, choices=AcceleratorKind.choices)
    accelerator_vendor = models.CharField(max_length=50, blank=True)
    accelerator_model = models.CharField(max_length=100)
    accelerator_count = models.PositiveIntegerField()
    accelerator_memory_gb = models.PositiveIntegerField(default=0)
    vcpu_count = models.PositiveIntegerField(default=0)
    ram_gib = models.PositiveIntegerField(default=0)
    backends = models.JSONField(default=list)
    agent_version = models.CharField(max_length=40, blank=True)

    last_heartbeat_at = models.DateTimeField(null=True, blank=True, db_index=True)

    # What the platform verified, written only by the benchmarks app when an onboarding suite
    # passes: the devices (by the identity each reported) whose every job passed, and the
    # precisions they all passed. Listings copy these, never the owner's word.
    verified_devices = models.JSONField(default=list, blank=True)
    verified_device_count = models.PositiveIntegerField(default=0)
    verified_precisions = models.JSONField(default=list, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.accelerator_count}× {self.accelerator_model})"


class AgentCredential(TimestampedModel):
    """The scoped secret a provider agent uses: it acts for one machine only."""

    machine = models.OneToOneField(Machine, on_delete=models.CASCADE, related_name="credential")
    key_hash = models.CharField(max_length=64, unique=True)
    display_prefix = models.CharField(max_length=16)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
