"""The benchmarks app's services, one module per concern:

- transitions: the job state machine, row locks, tasks enqueued on commit;
- jobs: one job through the protocol (creation, onboarding, dispatch, commitment, challenge,
  answer, verification, expiry);
- verdicts: what a decided job does to its suite, machine, leases and listing;
- incidents: the platform's own failures, which excuse missed deadlines and heartbeats;
- scheduling: periodic re-verification, lease checks' fetch deadline, the check of a machine
  back from offline, uptime samples, re-sent tasks;
- liveness: machines whose heartbeats stopped.

Callers use `services.<name>`; the names below are the public surface.
"""

from marketplace.benchmarks.services.incidents import (
    platform_failing_during,
    platform_health_observed,
    platform_health_probe,
    platform_incident_server_error,
)
from marketplace.benchmarks.services.jobs import (
    MAX_AGENT_SECONDS,
    MAX_COMMITMENT_BYTES,
    MAX_SKETCH_BODY_BYTES,
    _Malformed,
    _parse_json,
    benchmark_commit,
    benchmark_dispatch_next,
    benchmark_expire,
    benchmark_issue_challenge,
    benchmark_job_create,
    benchmark_submit_answer,
    benchmark_submit_sketch,
    benchmark_verify,
    benchmarks_expire_overdue,
    machine_onboarding_start,
    queued_for_free_devices,
)
from marketplace.benchmarks.services.liveness import (
    machine_heartbeat_lapsed,
    machines_expire_heartbeats,
)
from marketplace.benchmarks.services.scheduling import (
    benchmarks_requeue_stalled,
    benchmarks_schedule_reverification,
    lease_check_expire_unfetched,
    lease_checks_expire_unfetched,
    machines_reverify_returned,
    machines_sample_uptime,
)
from marketplace.benchmarks.services.transitions import TRANSITIONS
from marketplace.benchmarks.services.verdicts import NO_FAULT_REASONS, _record_listing_tflops
from workers.kernels import SpecError

__all__ = [
    "MAX_AGENT_SECONDS",
    "MAX_COMMITMENT_BYTES",
    "MAX_SKETCH_BODY_BYTES",
    "NO_FAULT_REASONS",
    "TRANSITIONS",
    "SpecError",
    "_Malformed",
    "_parse_json",
    "_record_listing_tflops",
    "benchmark_commit",
    "benchmark_dispatch_next",
    "benchmark_expire",
    "benchmark_issue_challenge",
    "benchmark_job_create",
    "benchmark_submit_answer",
    "benchmark_submit_sketch",
    "benchmark_verify",
    "benchmarks_expire_overdue",
    "benchmarks_requeue_stalled",
    "benchmarks_schedule_reverification",
    "lease_check_expire_unfetched",
    "lease_checks_expire_unfetched",
    "machine_heartbeat_lapsed",
    "machine_onboarding_start",
    "machines_expire_heartbeats",
    "queued_for_free_devices",
    "machines_reverify_returned",
    "machines_sample_uptime",
    "platform_failing_during",
    "platform_health_observed",
    "platform_health_probe",
    "platform_incident_server_error",
]
