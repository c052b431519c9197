"""/healthz and /ready decisions."""

from __future__ import annotations

from stream_tagger.hot_path import HotPathState
from stream_tagger.web import health, readiness


def running(**kwargs: object) -> HotPathState:
    state = HotPathState(running=True, last_progress=100.0)
    for name, value in kwargs.items():
        setattr(state, name, value)
    return state


def test_healthy_when_running_and_not_stalled() -> None:
    assert health(running(), stall_seconds=60, now=130.0) == (True, "ok")


def test_idle_without_lag_is_healthy() -> None:
    assert health(running(assigned=frozenset({("raw", 0)})), stall_seconds=60, now=1_000.0)[0]


def test_lag_with_no_progress_for_stall_seconds_is_unhealthy() -> None:
    state = running(assigned=frozenset({("raw", 0)}), lag={("raw", 0): 500})
    assert health(state, stall_seconds=60, now=150.0)[0]
    ok, reason = health(state, stall_seconds=60, now=170.0)
    assert not ok
    assert "500 messages waiting" in reason


def test_lag_of_partitions_no_longer_assigned_is_ignored() -> None:
    state = running(assigned=frozenset({("raw", 1)}), lag={("raw", 0): 500})
    assert health(state, stall_seconds=60, now=1_000.0)[0]


def test_failed_hot_path_is_unhealthy() -> None:
    assert not health(running(failure="DeliveryFailed()"), stall_seconds=60, now=100.0)[0]


def test_starting_hot_path_is_alive_but_not_ready() -> None:
    assert health(HotPathState(), stall_seconds=60, now=100.0)[0]
    assert not readiness(HotPathState())[0]


def test_ready_only_with_partitions_assigned() -> None:
    assert readiness(running()) == (False, "no partitions assigned")
    assert readiness(running(assigned=frozenset({("raw", 0), ("raw", 1)})))[0]
    assert not readiness(HotPathState())[0]
