from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.accounts import services
from marketplace.accounts.serializers import (
    LoginInputSerializer,
    SignupInputSerializer,
    TokenOutputSerializer,
    UserOutputSerializer,
)
from marketplace.accounts.throttles import AuthRateThrottle


class SignupApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [AuthRateThrottle]

    @extend_schema(
        summary="Sign up",
        description="Creates an account (role `renter` or `provider_owner`) and returns its "
        "first API token, shown this once. Send it as `Authorization: Token mkt_…` on every "
        "other call. Throttled per client address.",
        request=SignupInputSerializer,
        responses={201: TokenOutputSerializer},
    )
    def post(self, request):
        data = SignupInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_create(**data.validated_data)
        _, raw = services.api_token_create(user=user, name="signup")
        return Response(
            TokenOutputSerializer({"token": raw, "user": user}).data, status=status.HTTP_201_CREATED
        )


class TokenCreateApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [AuthRateThrottle]

    @extend_schema(
        summary="Log in: create an API token",
        description="Exchanges a user name and password for a new API token, shown this once "
        "(only its hash is stored). Each call makes another token; revoke one with "
        "DELETE /api/v1/auth/tokens/current. Throttled per client address.",
        request=LoginInputSerializer,
        responses={201: TokenOutputSerializer},
    )
    def post(self, request):
        data = LoginInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, raw = services.api_token_login(
            username=data.validated_data["username"],
            password=data.validated_data["password"],
            name=data.validated_data["token_name"],
        )
        return Response(
            TokenOutputSerializer({"token": raw, "user": token.user}).data,
            status=status.HTTP_201_CREATED,
        )


class CurrentTokenApi(APIView):
    @extend_schema(
        summary="Log out: revoke the token in use",
        description="Revokes the API token that authenticated this request; it is refused "
        "from then on. Other tokens of the user stay valid.",
        responses={204: None},
    )
    def delete(self, request):
        from marketplace.accounts.models import ApiToken

        if isinstance(request.auth, ApiToken):
            services.api_token_revoke(token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    @extend_schema(
        summary="Who am I",
        description="The user the credentials belong to, with their role.",
        responses=UserOutputSerializer,
    )
    def get(self, request):
        return Response(UserOutputSerializer(request.user).data)
