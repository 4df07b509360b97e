from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.accounts.permissions import IsProviderOwner, IsStaff
from marketplace.accounts.throttles import AuthRateThrottle
from marketplace.core.db_pool import in_db_thread
from marketplace.providers import heartbeats, selectors, services
from marketplace.providers.authentication import (
    AgentCredentialAuthentication,
    AgentPrincipal,
    IsAgent,
)
from marketplace.providers.serializers import (
    AgentRegisterInputSerializer,
    AgentRegisterOutputSerializer,
    HeartbeatOutputSerializer,
    MachineOutputSerializer,
    ProviderInputSerializer,
    ProviderOutputSerializer,
    RegistrationTokenOutputSerializer,
    SuspendInputSerializer,
)
from marketplace.providers.throttles import AgentRateThrottle


class ProviderListCreateApi(ListAPIView):
    permission_classes = [IsProviderOwner]
    serializer_class = ProviderOutputSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return self.serializer_class.Meta.model.objects.none()
        return selectors.provider_list_for(user=self.request.user)

    @extend_schema(request=ProviderInputSerializer, responses={201: ProviderOutputSerializer})
    def post(self, request):
        data = ProviderInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        provider = services.provider_create(owner=request.user, **data.validated_data)
        return Response(ProviderOutputSerializer(provider).data, status=status.HTTP_201_CREATED)


class ProviderDetailApi(APIView):
    permission_classes = [IsProviderOwner]

    @extend_schema(responses=ProviderOutputSerializer)
    def get(self, request, provider_id: int):
        provider = selectors.provider_get_for(user=request.user, provider_id=provider_id)
        return Response(ProviderOutputSerializer(provider).data)


class RegistrationTokenCreateApi(APIView):
    permission_classes = [IsProviderOwner]

    @extend_schema(request=None, responses={201: RegistrationTokenOutputSerializer})
    def post(self, request, provider_id: int):
        provider = selectors.provider_get_for(user=request.user, provider_id=provider_id)
        token, raw = services.registration_token_create(provider=provider, user=request.user)
        return Response(
            {"registration_token": raw, "expires_at": token.expires_at},
            status=status.HTTP_201_CREATED,
        )


class MachineListApi(ListAPIView):
    permission_classes = [IsProviderOwner]
    serializer_class = MachineOutputSerializer
    filterset_fields = ["state", "provider"]

    def get_serializer(self, *args, **kwargs):
        if args and isinstance(args[0], list):
            heartbeats.machines_last_seen_overlay(args[0])
        return super().get_serializer(*args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return self.serializer_class.Meta.model.objects.none()
        return selectors.machine_list_for(user=self.request.user)


class MachineDetailApi(APIView):
    permission_classes = [IsProviderOwner]

    @extend_schema(responses=MachineOutputSerializer)
    def get(self, request, machine_id: int):
        machine = selectors.machine_get_for(user=request.user, machine_id=machine_id)
        heartbeats.machines_last_seen_overlay([machine])
        return Response(MachineOutputSerializer(machine).data)


class MachineSuspendApi(APIView):
    permission_classes = [IsStaff]

    @extend_schema(request=SuspendInputSerializer, responses=MachineOutputSerializer)
    def post(self, request, machine_id: int):
        data = SuspendInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        machine = selectors.machine_get_for(user=request.user, machine_id=machine_id)
        machine = services.machine_suspend(machine_id=machine.pk, **data.validated_data)
        return Response(MachineOutputSerializer(machine).data)


class AgentRegisterApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [AuthRateThrottle]

    @extend_schema(
        request=AgentRegisterInputSerializer, responses={201: AgentRegisterOutputSerializer}
    )
    def post(self, request):
        data = AgentRegisterInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        machine, credential = services.machine_register(**data.validated_data)
        return Response(
            {"machine_id": machine.pk, "credential": credential}, status=status.HTTP_201_CREATED
        )


class AgentApiMixin:
    authentication_classes = [AgentCredentialAuthentication]
    permission_classes = [IsAuthenticated, IsAgent]
    throttle_classes = [AgentRateThrottle]


class AgentHeartbeatApi(AgentApiMixin, APIView):
    @extend_schema(request=None, responses=HeartbeatOutputSerializer)
    def post(self, request):
        machine = services.machine_heartbeat(machine_id=request.user.machine_id)
        return Response(
            {"machine_id": machine.pk, "state": machine.state, "server_time": timezone.now()}
        )


class AgentMachineApi(AgentApiMixin, APIView):
    @extend_schema(responses=MachineOutputSerializer)
    def get(self, request):
        from marketplace.providers.models import Machine

        machine = Machine.objects.get(pk=request.user.machine_id)
        heartbeats.machines_last_seen_overlay([machine])
        return Response(MachineOutputSerializer(machine).data)


# --- the ASGI agent channel ---------------------------------------------------------------------


class AgentChannelAuthentication(AgentCredentialAuthentication):
    """The agent credential, without a database write per request: on the channel, the
    credential's last use is recorded with the coalesced heartbeats (heartbeats_flush). The
    lookup is one prepared statement (selectors.agent_credential_machine_id): building the ORM
    query for it was a third of a 5,000-agent channel's CPU. Checked on every request, so a
    revoked credential is refused at once."""

    touch_last_used = False

    def authenticate_hash(self, key_hash: str):
        machine_id = selectors.agent_credential_machine_id(key_hash=key_hash)
        if machine_id is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked agent credential.")
        return AgentPrincipal(machine_id=machine_id), None


async def agent_channel_serve(view_class, request, handle, **kwargs):
    """Serves one request of a DRF agent view as a coroutine (marketplace/asgi.py routes the
    agent channel's hot paths here): the view's own authentication, permissions, throttles
    and exception handler run in the database pool, `handle(view, drf_request)` does the rest
    and may wait without holding a thread. An unexpected error propagates (a 500)."""
    view = view_class()
    view.authentication_classes = [AgentChannelAuthentication]
    view.args, view.kwargs = (), kwargs
    view.headers = view.default_response_headers
    drf_request = view.request = view.initialize_request(request, **kwargs)
    try:
        await in_db_thread(view.initial, drf_request, **kwargs)
        response = await handle(view, drf_request)
    except Exception as exc:  # noqa: BLE001 - the view's handler decides; it re-raises a 500
        response = await in_db_thread(view.handle_exception, exc)
    response = view.finalize_response(drf_request, response, **kwargs)
    return response.render()


async def agent_heartbeat_channel(request):
    async def handle(view, drf_request):
        machine = await in_db_thread(
            services.machine_heartbeat, machine_id=drf_request.user.machine_id
        )
        return Response(
            {"machine_id": machine.pk, "state": machine.state, "server_time": timezone.now()}
        )

    return await agent_channel_serve(AgentHeartbeatApi, request, handle)
