"""What the environment actor does to its own process once set up: the heap frozen out of the
collector's full passes, and glibc's malloc thresholds fixed so a step's large buffers reuse
memory the process holds (episode.py, `freeze_heap`, `steady_allocator`)."""

from __future__ import annotations

import gc
import platform
import resource

import numpy as np
import pytest
import ray

from swarm_arena.arena.episode import freeze_heap, steady_allocator

BUFFER_BYTES = 48 << 20  # above glibc's largest dynamic mmap threshold (32 MiB): mapped afresh by default


def _faults_per_buffer(buffers: int = 4) -> float:
    """Minor page faults per large buffer allocated, filled and freed (the first one left out)."""
    np.ones(BUFFER_BYTES // 8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(buffers):
        np.ones(BUFFER_BYTES // 8)  # allocated, touched, freed at once
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / buffers


@ray.remote(num_cpus=0)
class _SetUp:
    def __init__(self, steady: bool) -> None:
        self.applied = steady_allocator() if steady else None
        freeze_heap()

    def report(self) -> dict:
        return {"applied": self.applied, "frozen": gc.get_freeze_count(), "faults": _faults_per_buffer()}


@ray.remote(num_cpus=0)
def _in_a_task() -> dict:
    return {"applied": steady_allocator(), "frozen": gc.get_freeze_count()}


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_an_actor_keeps_large_buffers_in_its_heap_and_freezes_what_it_holds(local_ray) -> None:
    steady = ray.get(_SetUp.remote(True).report.remote())
    assert steady["applied"] is True
    assert steady["frozen"] > 1000, steady  # Ray, numpy, the modules: frozen once set up
    # Without the fixed thresholds each 48 MiB buffer is mapped afresh and faulted in (here 536
    # faults a buffer: numpy asks for huge pages on large arrays; 12,288 with 4 KiB pages); with
    # them the freed buffer's memory is reused.
    assert steady["faults"] < 10, steady
    plain = ray.get(_SetUp.remote(False).report.remote())
    assert plain["faults"] > 100, plain  # the measure tells the two apart


def test_neither_applies_outside_an_actor(local_ray) -> None:
    """A task, or a test or benchmark stepping EnvironmentWorker in its own process, keeps its
    allocator and collector as they are."""
    assert ray.get(_in_a_task.remote()) == {"applied": False, "frozen": 0}
    frozen = gc.get_freeze_count()
    assert steady_allocator() is False
    freeze_heap()
    assert gc.get_freeze_count() == frozen
