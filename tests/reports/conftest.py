"""The fixtures of tests/benchmarks (real API through DRF's test client, eager Celery, real
agent code), reused: these tests are about what a verdict publishes."""

from tests.benchmarks.conftest import (  # noqa: F401
    eager_celery,
    make_agent,
    no_chain_receivers,
    runner_for,
    verdicts,
)
