"""`wait_for`: a transient error is "not yet"; a failed condition fails at once, not at the deadline."""

from __future__ import annotations

import pytest

from tests.controlplane.plane import ComponentExited, ControlPlaneError, wait_for


def test_a_transient_error_is_retried_until_the_condition_holds() -> None:
    calls = []

    def check() -> str | None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("refused while it restarts")
        return "ok"

    assert wait_for("flaky", check, timeout=30, interval=0.01) == "ok"
    assert len(calls) == 3


def test_an_assertion_error_goes_through_at_once() -> None:
    calls = []

    def check() -> None:
        calls.append(1)
        raise AssertionError("evaluation failed")

    with pytest.raises(AssertionError, match="evaluation failed"):
        wait_for("a phase", check, timeout=5, interval=0.01)
    assert calls == [1]  # not polled again until the deadline


def test_a_component_that_exited_goes_through_at_once() -> None:
    calls = []

    def check() -> None:
        calls.append(1)
        raise ComponentExited("operator exited 1")

    with pytest.raises(ComponentExited):
        wait_for("healthz", check, timeout=5, interval=0.01)
    assert calls == [1]


def test_the_deadline_reports_the_last_error() -> None:
    def check() -> None:
        raise ConnectionError("still refused")

    with pytest.raises(ControlPlaneError, match="ConnectionError: still refused") as failed:
        wait_for("never", check, timeout=0.05, interval=0.01, on_timeout=lambda: "the tail")
    assert "timed out" in str(failed.value) and "the tail" in str(failed.value)
