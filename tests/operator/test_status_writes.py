"""The operator's status writes against the real API server (no operator running: nothing else
writes): a nested field that became empty is gone on the server, not merged back in."""

from __future__ import annotations

import asyncio
import json

import pytest

from swarm_arena.api.status import Recovery, SwarmEvaluationStatus
from swarm_arena.controller.kube import Kube, merge_patch
from tests.operator.conftest import manifest

pytestmark = pytest.mark.controlplane


def test_a_nested_field_that_became_empty_is_removed_on_the_server(control_plane, crd, namespace, kube_api) -> None:
    doc = manifest("nested", suspend=True)
    control_plane.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(doc))
    kube = Kube(kube_api)
    first = SwarmEvaluationStatus(recoveries=1, last_recovery=Recovery(
        time="2026-12-07T11:00:00Z", reason="NodeLost", actors_restarted=["env-0"], nodes_lost=["abc"], episode=3,
        resumed_from_step=40, seconds=1.5)).to_wire()
    second = SwarmEvaluationStatus(recoveries=2, last_recovery=Recovery(
        time="2026-12-07T11:05:00Z", reason="HeadLost", seconds=9.0)).to_wire()

    async def write() -> None:
        await kube.patch_status(namespace, "nested", merge_patch({}, first))
        await kube.patch_status(namespace, "nested", merge_patch(first, second))

    try:
        asyncio.run(write())
    finally:
        kube.close()
    stored = json.loads(control_plane.kubectl("get", "swe", "nested", "-n", namespace, "-o", "json").stdout)["status"]
    # The second recovery had no episode, step or lost nodes: none of the first one's are left.
    assert stored == second, stored
