"""Writing an evaluation's status: the status-writer concern of a pass.

Status is written when the decision changed it, as a merge patch against what is stored, with the
Events the change calls for; a Provisioning evaluation's rewording of conditions alone waits
(`DETAIL_INTERVAL_S`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from swarm_arena.api.status import Phase, SwarmEvaluationStatus
from swarm_arena.controller import events, metrics
from swarm_arena.controller.decide import Decision
from swarm_arena.controller.kube import Kube, merge_patch

log = logging.getLogger(__name__)

DETAIL_INTERVAL_S = 10.0
"""While an evaluation is Provisioning, a status write that only rewords its conditions (KubeRay's
passing reasons as it makes the pods, the dashboard's error while the head starts) waits up to
this long and goes out with whatever is true then. Everything else goes at once: a phase, a
condition turning true or false, the submission id, progress. At 1,000 new evaluations these
rewordings were three of every five status writes, each fanned out to every watcher."""


def _gist(status: dict[str, Any]) -> dict[str, Any]:
    """A status without its conditions' wording: what a deferred write may not change."""
    gist = {k: v for k, v in status.items() if k != "conditions"}
    gist["conditions"] = sorted((c.get("type"), c.get("status")) for c in status.get("conditions") or [])
    return gist



@dataclass
class Written:
    """What the writer remembers of an evaluation's status (`Memory.written`)."""

    last_status: dict[str, Any] | None = None
    """The status this operator last wrote (or found already written): what a pass starts from. The
    operator is the only writer of status, and one process at a time acts (the Lease)."""
    written_at: float | None = None
    """Monotonic time of the last status write (what `DETAIL_INTERVAL_S` counts from)."""


async def write_status(kube: Kube, ns: str, name: str, uid: str, old: SwarmEvaluationStatus, decision: Decision,
                       written: Written) -> float | None:
    """Write status if it changed; returns seconds until a deferred write is due (`DETAIL_INTERVAL_S`)."""
    new = decision.status.to_wire()
    metrics.set_phase(uid, decision.status.phase)  # every pass: right after an operator restart too
    stored = old.to_wire()
    if new == written.last_status or new == stored:
        written.last_status = new
        return None
    if (decision.status.phase is Phase.PROVISIONING and old.phase is Phase.PROVISIONING
            and not decision.actions and decision.event is None and written.written_at is not None
            and _gist(new) == _gist(written.last_status if written.last_status is not None else stored)):
        due = written.written_at + DETAIL_INTERVAL_S - time.monotonic()
        if due > 0:
            return due
    await kube.patch_status(ns, name, merge_patch(stored, new))
    written.last_status = new
    written.written_at = time.monotonic()
    recovered = (decision.status.recoveries or 0) - (old.recoveries or 0)
    last = decision.status.last_recovery
    if recovered > 0 and last is not None:
        lost = f" on Ray node(s) {', '.join(n[:12] for n in last.nodes_lost)}" if last.nodes_lost else ""
        events.post(ns, name, uid, "Normal", "Recovered",
                    f"{last.reason}{lost}: restarted {len(last.actors_restarted)} actor(s) "
                    f"({', '.join(last.actors_restarted[:5])}) in {last.seconds:.1f}s; recoveries: "
                    f"{decision.status.recoveries}")
    if decision.event is not None:
        if decision.event[1] == decision.status.phase.value:  # a phase change (not Resubmitting)
            metrics.PHASE_CHANGES.labels(phase=decision.status.phase.value).inc()
        events.post(ns, name, uid, *decision.event)
        if decision.event[0] == "Warning":
            log.warning("%s/%s: %s: %s", ns, name, decision.event[1], decision.event[2])

