"""The short soak (issue 18 point 16; the full one is benchmarks/soak.py, tests/operator/soak.py
says how it works): one evaluation on process-backed pods while the operator is killed and
restarted, the API server restarted and a worker's node cut off from the network, in a seeded
random order at seeded random moments. It must end Succeeded with the
leaderboard of the uninterrupted run, every episode counted exactly once, and never two attempts
running at once. No timing is asserted."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.operator.conftest import Evaluations
from tests.operator.soak import Soak, check, reference_run, soak_manifest

pytestmark = pytest.mark.controlplane

EPISODES = 40  # of 1000 steps: 2-3 minutes of stepping here, longer than the three faults take
SHORT_KINDS = ("operator", "apiserver", "node-cut")  # the others: test_real_clusters.py, and the full soak


def test_a_short_soak_ends_with_the_reference_results(process_nodes, namespace, operator_factory,
                                                      tmp_path: Path) -> None:
    op = operator_factory([namespace]).start()
    evals = Evaluations(process_nodes, namespace, op.tail)
    evals.operator = op
    store = Path("/var/tmp") / f"swarm-arena-soak-{namespace}"
    doc = soak_manifest("soak", episodes=EPISODES, store=store, max_steps=1000)
    # the reference (an embedded Ray) runs while the cluster comes up
    pool = ThreadPoolExecutor(1)
    reference_future = pool.submit(reference_run, doc, tmp_path)
    try:
        soak = Soak(process_nodes, op, evals, "soak", doc, seed=18, kinds=SHORT_KINDS, seconds=600, gap=(1, 3),
                    cut_for=(10, 15), recover_timeout=300, max_faults=len(SHORT_KINDS))
        outcome = soak.run(reference_episodes=EPISODES)
    finally:
        shutil.rmtree(store, ignore_errors=True)
        pool.shutdown(wait=True)
    reference = reference_future.result()
    problems = check(outcome, reference)
    assert not problems, json.dumps(problems, indent=1) + "\n" + op.tail()
    assert outcome.records == list(range(EPISODES))
    # the run outlasted its faults: every kind was injected (and recovered from)
    assert sorted(f.kind for f in outcome.faults) == sorted(SHORT_KINDS), outcome.faults
