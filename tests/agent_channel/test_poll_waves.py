"""A long wait ends at its machine's own moment (wakeups.held_seconds), so a fleet that
connected at once does not poll in waves. Pure arithmetic: no server."""

from collections import Counter

import pytest

from marketplace.benchmarks.wakeups import SPREAD_FROM_SECONDS, held_seconds

WAIT = 25.0


@pytest.mark.parametrize("wait", [0.5, 1, 2, 4.99])
def test_a_short_wait_is_held_exactly(wait):
    assert held_seconds(machine_id=7, wait=wait, now=1_000.25) == wait


def test_a_long_wait_is_held_between_seventy_percent_and_all_of_it():
    for machine_id in range(1, 400):
        for now in (0.0, 1_000.125, 1_764_000_000.7, 1_764_000_013.3):
            held = held_seconds(machine_id, WAIT, now)
            assert 0.7 * WAIT - 1e-6 <= held <= WAIT, (machine_id, now, held)
    assert held_seconds(3, SPREAD_FROM_SECONDS, 12.0) <= SPREAD_FROM_SECONDS


def test_a_machine_always_ends_on_its_own_phase():
    """Whenever it asks, a machine's waits end on the same grid of 7.5 s (30% of 25 s)."""
    grid = 0.3 * WAIT
    for machine_id in (1, 2, 17, 4_999):
        ends = [now + held_seconds(machine_id, WAIT, now) for now in (0.0, 3.1, 8.9, 101.77)]
        phases = {round(end % grid, 6) % round(grid, 6) for end in ends}
        assert len(phases) == 1, (machine_id, ends)


def _busiest_second(ends: list[float]) -> int:
    return max(Counter(int(end) for end in ends).values())


def test_a_fleet_that_connects_at_once_polls_evenly_from_its_first_round():
    """5,000 machines ask at the same instant. Held for exactly 25 s (as before) they would all
    come back in the same second; now their ends spread over the 7.5 s grid, and after they
    poll again (each at its end, plus a little network time) they stay spread: no second holds
    more than twice its share."""
    machines = range(1, 5_001)
    start = 1_764_000_000.0
    assert _busiest_second([start + WAIT for _ in machines]) == 5_000  # the old waves

    first_ends = [start + held_seconds(m, WAIT, start) for m in machines]
    even_share = 5_000 / (0.3 * WAIT)
    assert _busiest_second(first_ends) <= 2 * even_share, _busiest_second(first_ends)

    second_ends = [
        end + 0.05 + held_seconds(m, WAIT, end + 0.05)
        for m, end in zip(machines, first_ends, strict=True)
    ]
    window = (min(second_ends), max(second_ends))
    assert window[1] - window[0] >= 0.25 * WAIT, window
    assert _busiest_second(second_ends) <= 2 * even_share, _busiest_second(second_ends)
