from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission

from marketplace.core.tokens import bearer_token, last_used_touch, token_hash

AGENT_TOKEN_PREFIX = "agt"


@dataclass(frozen=True)
class AgentPrincipal:
    """request.user for an agent: it is nobody's account, only its machine's voice."""

    machine_id: int
    is_authenticated: bool = True
    is_staff: bool = False
    is_renter: bool = False
    is_provider_owner: bool = False
    is_active: bool = True
    pk = None


class AgentCredentialAuthentication(authentication.BaseAuthentication):
    keyword = "Token"
    # The ASGI agent channel turns this off: its heartbeats record the last use in bulk.
    touch_last_used = True

    def authenticate(self, request):
        required = "An agent credential (agt_…) is required."
        raw = bearer_token(request, malformed_message=required)
        if raw is None:
            return None
        if not raw.startswith(f"{AGENT_TOKEN_PREFIX}_"):
            raise exceptions.AuthenticationFailed(required)
        return self.authenticate_hash(token_hash(raw))

    def authenticate_hash(self, key_hash: str):
        from marketplace.providers.models import AgentCredential

        credential = (
            AgentCredential.objects.select_related("machine")
            .filter(key_hash=key_hash, revoked_at__isnull=True)
            .first()
        )
        if credential is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked agent credential.")
        if self.touch_last_used:
            last_used_touch(credential)
        return AgentPrincipal(machine_id=credential.machine_id), credential

    def authenticate_header(self, request):
        return self.keyword


class IsAgent(BasePermission):
    message = "Only a provider agent may do this."

    def has_permission(self, request, view):
        return isinstance(request.user, AgentPrincipal)


class AgentCredentialScheme(OpenApiAuthenticationExtension):
    target_class = "marketplace.providers.authentication.AgentCredentialAuthentication"
    name = "agentCredential"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token agt_…` from POST /api/v1/agent/register",
        }
