"""Per-role counters for the schema fuzz run, printed in pytest's terminal summary."""

from collections import Counter
from dataclasses import dataclass, field

import pytest


@dataclass
class RoleStats:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    schema_violations: list[str] = field(default_factory=list)
    # Operations whose negative space is empty (nothing in them can be made invalid).
    no_negative_cases: list[str] = field(default_factory=list)


_STATS: dict[str, RoleStats] = {}


@pytest.fixture(scope="session")
def fuzz_stats() -> dict[str, RoleStats]:
    return _STATS


def pytest_terminal_summary(terminalreporter):
    if not _STATS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("schema fuzz (schemathesis)")
    for role, stats in _STATS.items():
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(stats.statuses.items()))
        write(
            f"{role:<15} requests={stats.requests:<5} server_errors={len(stats.server_errors)} "
            f"schema_violations={len(stats.schema_violations)}  [{statuses}]"
        )
    write(
        f"{'total':<15} requests={sum(s.requests for s in _STATS.values())} "
        f"server_errors={sum(len(s.server_errors) for s in _STATS.values())} "
        f"schema_violations={sum(len(s.schema_violations) for s in _STATS.values())}"
    )
