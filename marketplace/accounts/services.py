from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.accounts.authentication import USER_TOKEN_PREFIX
from marketplace.accounts.models import ApiToken, User
from marketplace.core.errors import ApplicationError, ConflictError
from marketplace.core.tokens import token_display_prefix, token_generate, token_hash


@transaction.atomic
def user_create(*, username: str, password: str, email: str = "", role: str) -> User:
    if role not in User.Role.values:
        raise ApplicationError(f"Unknown role '{role}'.", code="accounts_unknown_role")
    user = User(username=username, email=email, role=role)
    validate_password(password, user)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:
        raise ConflictError("That username is taken.", code="accounts_username_taken") from exc
    return user


def api_token_create(*, user: User, name: str = "") -> tuple[ApiToken, str]:
    """Returns the stored token and the raw key, which is never retrievable again."""
    raw = token_generate(USER_TOKEN_PREFIX)
    token = ApiToken.objects.create(
        user=user, name=name, key_hash=token_hash(raw), display_prefix=token_display_prefix(raw)
    )
    return token, raw


def api_token_login(*, username: str, password: str, name: str = "") -> tuple[ApiToken, str]:
    user = authenticate(username=username, password=password)
    if user is None:
        raise ApplicationError(
            "Wrong username or password.", code="accounts_bad_credentials", status_code=401
        )
    return api_token_create(user=user, name=name)


def api_token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
