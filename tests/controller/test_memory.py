"""The reconciler's per-evaluation memory, grouped by concern: a finished run drops everything
its run needed and keeps what the object itself still needs."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from swarm_arena.controller.counted_results import Counted
from swarm_arena.controller.reconciler import Memory, RunMemory
from swarm_arena.controller.status_writer import Written


def test_forget_run_drops_every_run_field_and_keeps_the_objects_own() -> None:
    memory = Memory()
    run = memory.run
    run.unreachable_since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    run.ray_nodes["10.0.0.2"] = "node"
    run.ray_nodes_at = 5.0
    run.repair_id = "job-repair-1"
    run.restarted.add("uid")
    run.head_ip, run.head_back_since = "10.0.0.1", 3.0
    memory.written = Written(last_status={"phase": "Succeeded"}, written_at=1.0)
    memory.spec_seen, memory.results_final = {"episodes": 1}, True
    counted = memory.counted

    memory.forget_run()

    assert memory.run == RunMemory()  # every field of the run, whatever fields it grows later
    assert memory.counted is not counted and memory.counted == Counted()
    assert memory.written == Written(last_status={"phase": "Succeeded"}, written_at=1.0)
    assert memory.spec_seen == {"episodes": 1} and memory.results_final is True


def test_every_memory_field_belongs_to_one_concern() -> None:
    grouped = {f.name for f in dataclasses.fields(Memory)}
    assert {"run", "counted", "written"} <= grouped
    run_fields = {f.name for f in dataclasses.fields(RunMemory)}
    assert not run_fields & grouped, "a run field is also kept on Memory itself"
