from django.urls import path

from marketplace.providers import apis

urlpatterns = [
    path("providers", apis.ProviderListCreateApi.as_view(), name="provider-list"),
    path("providers/<int:provider_id>", apis.ProviderDetailApi.as_view(), name="provider-detail"),
    path(
        "providers/<int:provider_id>/registration-tokens",
        apis.RegistrationTokenCreateApi.as_view(),
        name="provider-registration-token",
    ),
    path("machines", apis.MachineListApi.as_view(), name="machine-list"),
    path("machines/<int:machine_id>", apis.MachineDetailApi.as_view(), name="machine-detail"),
    path(
        "machines/<int:machine_id>/suspend",
        apis.MachineSuspendApi.as_view(),
        name="machine-suspend",
    ),
    path("agent/register", apis.AgentRegisterApi.as_view(), name="agent-register"),
    path("agent/heartbeat", apis.AgentHeartbeatApi.as_view(), name="agent-heartbeat"),
    path("agent/machine", apis.AgentMachineApi.as_view(), name="agent-machine"),
]
