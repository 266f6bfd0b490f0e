"""Kubernetes-style conditions: set one, keeping lastTransitionTime while its status holds (pure)."""

from __future__ import annotations

import re

from swarm_arena.api.status import Condition

# Terminal control sequences (CSI, e.g. colours `ESC[31m`, and OSC): a Ray error message carries them.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def plain(text: str) -> str:
    """`text` without terminal escape sequences."""
    return _ANSI.sub("", text)

READY = "Ready"
CLUSTER_READY = "ClusterReady"
JOB_RUNNING = "JobRunning"
DEGRADED = "Degraded"
COMPLETE = "Complete"
FAILED = "Failed"
# kstatus (Flux) reads Stalled=True as "failed, will not progress on its own".
STALLED = "Stalled"
# Set (True) only when spec.stopping ended the run before its plan: reason and episodes saved.
STOPPED_EARLY = "StoppedEarly"
ORDER = (READY, CLUSTER_READY, JOB_RUNNING, DEGRADED, COMPLETE, FAILED, STALLED, STOPPED_EARLY)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    *,
    now: str,
    generation: int | None,
) -> list[Condition]:
    """`conditions` with `type_` set; `status` None means Unknown."""
    value = "Unknown" if status is None else ("True" if status else "False")
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == value else now
    new = Condition(
        type=type_, status=value, reason=reason, message=plain(message),
        last_transition_time=since, observed_generation=generation,
    )  # fmt: skip
    rest = [c for c in conditions if c.type != type_]
    return sorted([*rest, new], key=lambda c: ORDER.index(c.type) if c.type in ORDER else len(ORDER))


def get(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
