"""Issue 8 §1, the agent's side: a server-side failure (5xx, refused connection) must not cost an
honest machine its job, so commit and answer are retried with backoff and jitter until the job's
deadline; and a hostile server's deeply nested reply fails that one call, it does not crash the
agent."""

import gzip
import random
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workers.agent.client import AgentApi, ApiError, RequestsTransport, ServerUnreachable
from workers.agent.runner import ABANDONED, JobRunner
from workers.kernels import spec_from_dict
from workers.verification import challenge_create

SPEC = {"kind": "matmul", "n": 8, "precision": "fp32"}
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DEADLINE = T0 + timedelta(seconds=120)


class FakeClock:
    """Time passes only when the runner sleeps."""

    def __init__(self) -> None:
        self.now = T0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)

    def __call__(self) -> datetime:
        return self.now


class FlakyServer:
    """A Transport whose commit and answer fail `failures[step]` times (alternating a refused
    connection and a 503), then succeed. `landed_anyway` makes a failed attempt take effect on
    the server all the same: the reply was lost, not the request."""

    def __init__(self, failures: dict[str, int], *, landed_anyway: bool = False) -> None:
        self.failures = dict(failures)
        self.landed_anyway = landed_anyway
        self.state = "dispatched"
        self.calls: list[str] = []
        self.answer_body: bytes | None = None

    def request(self, method, path, *, params=None, body=None):
        step = path.rsplit("/", 1)[-1]
        self.calls.append(step)
        if step in ("commitment", "answer"):
            return self._write(step, body)
        if step == "challenge":
            challenge = challenge_create(spec_from_dict(SPEC), sample_count=4)
            return 200, {"job_id": 1, "challenge": challenge, "deadline": DEADLINE.isoformat()}
        return 200, {"state": "verified", "outcome_reason": "", "measured_tflops": 0.5}

    def _write(self, step, body):
        target, before = {"commitment": ("committed", "dispatched"), "answer": ("answered", "")}[
            step
        ]
        if step == "answer" and self.answer_body is not None:
            return 409, {
                "error": {
                    "code": "benchmarks_answer_exists",
                    "message": "An answer for this job was already received.",
                    "detail": {},
                }
            }
        if step == "commitment" and self.state != before:
            return 409, {
                "error": {
                    "code": "benchmarkjob_invalid_transition",
                    "message": "BenchmarkJob 1 cannot go from 'committed' to 'committed'.",
                    "detail": {"current_state": self.state, "requested_state": "committed"},
                }
            }
        failing = self.failures.get(step, 0) > 0
        if failing:
            self.failures[step] -= 1
            if not self.landed_anyway:
                if self.failures[step] % 2:
                    raise ServerUnreachable("connection refused")
                return 503, None
        if step == "commitment":
            self.state = target
        else:
            self.answer_body = body
        if failing:
            return 502, None  # the request landed; its reply did not
        return 202, {"id": 1, "state": self.state, "deadline": DEADLINE.isoformat()}


def _runner(server, clock) -> JobRunner:
    return JobRunner(
        AgentApi(server),
        backend="numpy",
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(8),
    )


def _job() -> dict:
    return {
        "id": 1,
        "kind": "matmul",
        "precision": "fp32",
        "spec": SPEC,
        "seed": "ab" * 16,
        "deadline": DEADLINE.isoformat().replace("+00:00", "Z"),  # as DRF writes it
    }


def test_commit_and_answer_are_retried_through_an_outage_and_the_job_is_verified():
    clock, server = FakeClock(), FlakyServer({"commitment": 4, "answer": 3})

    result = _runner(server, clock).handle(_job())

    assert result.state == "verified"
    assert server.calls.count("commitment") == 5 and server.calls.count("answer") == 4
    assert len(clock.sleeps) == 4 + 3 + 0  # one backoff per failure, none after a success
    # full jitter under an exponential cap: attempt a waits at most 2**a seconds
    caps = [2**a for a in range(4)] + [2**a for a in range(3)]
    assert all(0 <= s <= cap for s, cap in zip(clock.sleeps, caps, strict=True)), clock.sleeps
    assert gzip.decompress(server.answer_body).startswith(b"{")


def test_an_outage_past_the_deadline_abandons_the_job_cleanly_at_the_deadline():
    clock, server = FakeClock(), FlakyServer({"commitment": 10_000})

    result = _runner(server, clock).handle(_job())

    assert result.state == ABANDONED and "unreachable" in result.reason
    assert clock.now == DEADLINE  # retried right up to it, and not a moment past
    assert "answer" not in server.calls


def test_a_retry_that_finds_its_earlier_attempt_landed_carries_on():
    """A 502 whose request did reach the server: the retry's 'already committed' / 'answer
    exists' conflict means done, not failed."""
    clock, server = FakeClock(), FlakyServer({"commitment": 1, "answer": 1}, landed_anyway=True)

    result = _runner(server, clock).handle(_job())

    assert result.state == "verified"
    assert server.calls.count("commitment") == 2 and server.calls.count("answer") == 2


def test_a_conflict_on_the_first_attempt_is_still_an_error():
    clock, server = FakeClock(), FlakyServer({})
    server.state = "committed"  # e.g. another copy of this agent committed first

    with pytest.raises(ApiError) as caught:
        _runner(server, clock).handle(_job())
    assert caught.value.status == 409


# --- a hostile server's replies ------------------------------------------------------------------


class _HostileHandler(BaseHTTPRequestHandler):
    replies: dict[str, tuple[int, bytes]] = {}

    def do_GET(self):  # noqa: N802 - http.server's name
        status, body = self.replies[self.path.split("?")[0]]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def hostile_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("status", [200, 409])
def test_a_nested_reply_fails_that_call_with_an_api_error(hostile_server, status):
    _HostileHandler.replies = {"/api/v1/agent/jobs/next": (status, NESTED)}
    api = AgentApi(RequestsTransport(hostile_server, "agt_x", timeout=10))

    with pytest.raises(ApiError) as caught:
        api.next_job(0)
    assert caught.value.code == "not_json" and "nested" in caught.value.message


def test_a_nested_5xx_reply_is_a_server_failure_to_retry(hostile_server):
    _HostileHandler.replies = {"/api/v1/agent/jobs/1": (500, NESTED)}
    api = AgentApi(RequestsTransport(hostile_server, "agt_x", timeout=10))

    with pytest.raises(ServerUnreachable):
        api.job(1)


def test_an_ordinary_reply_still_parses(hostile_server):
    _HostileHandler.replies = {"/api/v1/agent/jobs/1": (200, b'{"state": "verified"}')}
    api = AgentApi(RequestsTransport(hostile_server, "agt_x", timeout=10))

    assert api.job(1) == {"state": "verified"}
