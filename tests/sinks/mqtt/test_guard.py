"""PublisherGuard: an exception in the publisher's threads becomes one run failure (never a
log line paho swallows, never a restart loop), and a loop that stops passing is noticed."""

from __future__ import annotations

import logging

import pytest

from edgecam.sinks.mqtt_guard import STALL_S, PublisherGuard


def test_a_callback_bug_is_recorded_once_with_where_it_happened(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wakes: list[None] = []
    guard = PublisherGuard(lambda: wakes.append(None))

    def on_publish(mid: int) -> None:
        raise KeyError(mid)

    wrapped = guard.guard(on_publish)
    wrapped(7)  # paho's thread must survive: nothing escapes
    wrapped(8)
    assert guard.failure is not None
    assert guard.failure.startswith("MQTT publisher stopped: KeyError: 7 (test_guard.py:")
    assert "in on_publish" in guard.failure
    assert guard.problem(loop_running=True) == guard.failure
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "exit status 1" in errors[0].getMessage()
    assert len(wakes) == 2  # close() and handle() waiting on the sink see it at once


def test_a_loop_that_stops_passing_is_a_problem_only_while_it_runs() -> None:
    now = [1000.0]
    guard = PublisherGuard(lambda: None, clock=lambda: now[0])
    guard.beat()
    now[0] += STALL_S - 1
    assert guard.problem(loop_running=True) is None
    now[0] += 2
    assert guard.problem(loop_running=True) == f"MQTT publisher stuck for {STALL_S + 1:.0f} s"
    assert guard.problem(loop_running=False) is None  # stopped by close(): not stuck
    guard.beat()
    assert guard.problem(loop_running=True) is None
