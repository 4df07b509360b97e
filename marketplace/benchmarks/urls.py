from django.urls import path

from marketplace.benchmarks import apis

urlpatterns = [
    path("agent/jobs/next", apis.AgentJobNextApi.as_view(), name="agent-job-next"),
    path("agent/jobs/<int:job_id>", apis.AgentJobDetailApi.as_view(), name="agent-job-detail"),
    path(
        "agent/jobs/<int:job_id>/commitment",
        apis.AgentJobCommitmentApi.as_view(),
        name="agent-job-commitment",
    ),
    path(
        "agent/jobs/<int:job_id>/sketch", apis.AgentJobSketchApi.as_view(), name="agent-job-sketch"
    ),
    path(
        "agent/jobs/<int:job_id>/challenge",
        apis.AgentJobChallengeApi.as_view(),
        name="agent-job-challenge",
    ),
    path(
        "agent/jobs/<int:job_id>/answer", apis.AgentJobAnswerApi.as_view(), name="agent-job-answer"
    ),
    path("reports/<str:report_hash>", apis.ReportDetailApi.as_view(), name="report-detail"),
    path(
        "machines/<int:machine_id>/benchmarks",
        apis.MachineBenchmarksApi.as_view(),
        name="machine-benchmarks",
    ),
]
