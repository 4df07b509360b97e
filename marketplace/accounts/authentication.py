from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from marketplace.core.tokens import token_hash

USER_TOKEN_PREFIX = "mkt"


def _bearer_token(request) -> str | None:
    header = authentication.get_authorization_header(request).decode("latin-1").split()
    if not header or header[0].lower() not in ("token", "bearer"):
        return None
    if len(header) != 2:
        raise exceptions.AuthenticationFailed("Authorization header must be 'Token <key>'.")
    return header[1]


class HashedTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token mkt_…` for people. Agent credentials are not accepted here."""

    keyword = "Token"

    def authenticate(self, request):
        raw = _bearer_token(request)
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
        now = timezone.now()
        # Touch last_used at most once a minute: a write on every request would serialise readers.
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
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
