from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from marketplace.core.tokens import bearer_token, last_used_touch, token_hash

USER_TOKEN_PREFIX = "mkt"
# providers.authentication.AGENT_TOKEN_PREFIX (accounts sits below providers and does not import
# it; tests/api_docs checks the two agree).
AGENT_TOKEN_PREFIX = "agt"
AGENT_CREDENTIAL_ON_USER_API = (
    "agent_credential_on_user_api",
    "This is an agent credential (agt_…): it works only on the agent endpoints "
    "(/api/v1/agent/…). The user API needs a user token (Token mkt_…, from POST "
    "/api/v1/auth/tokens).",
)


class HashedTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token mkt_…` for people. Agent credentials are not accepted here."""

    keyword = "Token"

    def authenticate(self, request):
        raw = bearer_token(request, malformed_message="Authorization header must be 'Token <key>'.")
        if raw is not None and raw.startswith(f"{AGENT_TOKEN_PREFIX}_"):
            # Not refused here: a public endpoint serves the caller as anonymous, as it would
            # without the header. Where credentials are required, the 401 says why this one
            # does not count (marketplace.core.exceptions reads the note).
            request.credential_refusal = AGENT_CREDENTIAL_ON_USER_API
            return None
        if raw is None or not raw.startswith(f"{USER_TOKEN_PREFIX}_"):
            return None
        from marketplace.accounts.models import ApiToken

        token = (
            ApiToken.objects.select_related("user")
            .filter(key_hash=token_hash(raw), revoked_at__isnull=True)
            .first()
        )
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        last_used_touch(token)
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword


class HashedTokenScheme(OpenApiAuthenticationExtension):
    target_class = "marketplace.accounts.authentication.HashedTokenAuthentication"
    name = "userToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token mkt_…` from POST /api/v1/auth/tokens",
        }
