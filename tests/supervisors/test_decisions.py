"""The pure supervision logic, with exact values and an injected clock."""

from __future__ import annotations

import pytest

from actorstage import Backoff, ExitReason, Restart, Strategy
from actorstage.supervisors._backoff import BackoffState
from actorstage.supervisors._intensity import RestartIntensity
from actorstage.supervisors._strategy import restart_group, should_restart


def test_intensity_counts_restarts_in_a_sliding_window_ends_included() -> None:
    intensity = RestartIntensity(max_restarts=2, within=10.0)
    assert intensity.record(0.0) is False
    assert intensity.record(5.0) is False
    assert intensity.record(10.0) is True  # 0, 5 and 10 all lie within 10 s
    spaced = RestartIntensity(max_restarts=2, within=10.0)
    for now in (0.0, 5.0, 10.5, 16.0, 21.0):  # never three within 10 s
        assert spaced.record(now) is False
    assert spaced.recent(21.0) == 2


def test_zero_restarts_allowed_fails_on_the_first() -> None:
    assert RestartIntensity(0, 1.0).record(0.0) is True


def test_should_restart_follows_otp() -> None:
    table = {
        Restart.PERMANENT: {ExitReason.CRASHED, ExitReason.NORMAL},
        Restart.TRANSIENT: {ExitReason.CRASHED},
        Restart.TEMPORARY: set(),
    }
    for restart, reasons in table.items():
        for reason in ExitReason:
            assert should_restart(restart, reason) is (reason in reasons), (restart, reason)


def test_restart_groups() -> None:
    order = ["a", "b", "c", "d"]
    assert restart_group(Strategy.ONE_FOR_ONE, order, "b") == ["b"]
    assert restart_group(Strategy.ONE_FOR_ALL, order, "b") == order
    assert restart_group(Strategy.REST_FOR_ONE, order, "b") == ["b", "c", "d"]
    assert restart_group(Strategy.REST_FOR_ONE, order, "d") == ["d"]


def test_backoff_delays_grow_cap_and_jitter_exactly() -> None:
    policy = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.0, reset_after=5.0)
    state = BackoffState(policy, lambda: 0.5)
    delays = [state.next_delay(float(i) * 0.01) for i in range(6)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    jittered = Backoff(initial=1.0, maximum=10.0, multiplier=3.0, jitter=0.2)
    assert jittered.delay(1, 0.0) == pytest.approx(0.8)
    assert jittered.delay(1, 0.999999) == pytest.approx(1.2, rel=1e-5)
    assert jittered.delay(2, 0.5) == pytest.approx(3.0)
    assert jittered.delay(5, 0.999999) == pytest.approx(10.0)  # jitter never passes the maximum


def test_backoff_resets_after_a_quiet_period_measured_from_the_restart() -> None:
    policy = Backoff(initial=1.0, maximum=8.0, multiplier=2.0, jitter=0.0, reset_after=10.0)
    state = BackoffState(policy, lambda: 0.5)
    assert state.next_delay(0.0) == 1.0  # restarted at 1.0
    assert state.next_delay(5.0) == 2.0  # ran 4 s: not quiet enough; restarted at 7.0
    assert state.next_delay(16.9) == 4.0  # ran 9.9 s
    assert state.next_delay(30.9) == 1.0  # ran 10 s since the restart at 20.9: reset
    assert state.attempt == 1


def test_backoff_takes_its_fields_in_the_documented_order() -> None:
    assert Backoff(0.5, 8.0, 3.0, 0.0) == Backoff(
        initial=0.5, maximum=8.0, multiplier=3.0, jitter=0.0)
