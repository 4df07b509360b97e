from django.contrib.auth.models import AbstractUser
from django.db import models

from marketplace.core.models import TimestampedModel


class User(AbstractUser):
    class Role(models.TextChoices):
        RENTER = "renter", "Renter"
        PROVIDER_OWNER = "provider_owner", "Provider owner"

    # Staff are ordinary users with is_staff set; the role says what a non-staff user may do.
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.RENTER)

    @property
    def is_renter(self) -> bool:
        return self.role == self.Role.RENTER

    @property
    def is_provider_owner(self) -> bool:
        return self.role == self.Role.PROVIDER_OWNER


class ApiToken(TimestampedModel):
    """A person's API token. The raw token is shown once; only its hash is kept."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True)
    display_prefix = models.CharField(max_length=16)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.display_prefix}… ({self.user})"
