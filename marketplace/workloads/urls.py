from django.urls import path

from marketplace.workloads import apis

_W = "orders/<int:order_id>/workloads"
_A = "agent/workloads/<int:workload_id>"

urlpatterns = [
    path(_W, apis.WorkloadListCreateApi.as_view(), name="workload-list"),
    path(f"{_W}/<int:workload_id>", apis.WorkloadDetailApi.as_view(), name="workload-detail"),
    path(f"{_W}/<int:workload_id>/logs", apis.WorkloadLogsApi.as_view(), name="workload-logs"),
    path(
        f"{_W}/<int:workload_id>/cancel", apis.WorkloadCancelApi.as_view(), name="workload-cancel"
    ),
    path(
        f"{_W}/<int:workload_id>/results",
        apis.WorkloadResultsApi.as_view(),
        name="workload-results",
    ),
    path("agent/workloads/next", apis.AgentWorkloadNextApi.as_view(), name="agent-workload-next"),
    path(_A, apis.AgentWorkloadDetailApi.as_view(), name="agent-workload-detail"),
    path(f"{_A}/input", apis.AgentWorkloadInputApi.as_view(), name="agent-workload-input"),
    path(f"{_A}/start", apis.AgentWorkloadStartApi.as_view(), name="agent-workload-start"),
    path(f"{_A}/ping", apis.AgentWorkloadPingApi.as_view(), name="agent-workload-ping"),
    path(f"{_A}/logs", apis.AgentWorkloadLogApi.as_view(), name="agent-workload-logs"),
    path(f"{_A}/finish", apis.AgentWorkloadFinishApi.as_view(), name="agent-workload-finish"),
]
