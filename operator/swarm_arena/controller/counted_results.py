"""What was counted for one evaluation and where it is kept: the counted-results concern of a pass.

The operator keeps every episode the job counted (read from the job's episodes file, the lines
added since the last pass) in the results ConfigMap and its record shards (build_results.py,
results_shards.py), so that a re-submission resumes them and the final results survive the Ray
cluster. `Counted` is what it knows (per evaluation, in `Memory`); `CountedResults` reads it back,
reads the new lines and writes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from swarm_arena.api import job_channel
from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.status import Recovery, Results, SwarmEvaluationStatus
from swarm_arena.controller import build_results, events, metrics, names, results_shards
from swarm_arena.controller.dashboard import Dashboard, JobInfo
from swarm_arena.controller.decide import JobView
from swarm_arena.controller.kube import Kube, NotOurs, ownership
from swarm_arena.controller.settings import OperatorSettings

log = logging.getLogger(__name__)


@dataclass
class Counted:
    """What the operator knows was counted for one evaluation (mirrors its results ConfigMap)."""

    loaded: bool = False
    episodes: dict[int, EpisodeRecord] = field(default_factory=dict)
    recoveries: list[Recovery] = field(default_factory=list)
    cursor: dict[str, int] = field(default_factory=dict)
    """submission id -> lines of its episodes file already read."""
    dirty: bool = False
    shards: list[results_shards.Shard] = field(default_factory=list)
    """Which ConfigMap holds which counted episodes (results_shards.py): shard 0 is the results ConfigMap."""
    unplaced: list[int] = field(default_factory=list)
    """Episodes counted since the last write, in counting order: not in `shards` yet."""
    written: dict[int, int] = field(default_factory=dict)
    """shard index (>= 1) -> how many members it had when it was last applied."""
    results: Results | None = None
    """The full results the job last reported (every policy, the pairwise matrix): the one source
    of both the results ConfigMap and status's top rows (`decide.status_results`)."""



class CountedResults:
    """Reads back, reads from the job and writes what was counted (one per operator)."""

    def __init__(self, settings: OperatorSettings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube

    async def read_owned(self, ns: str, name: str, uid: str, cm_name: str) -> dict[str, Any] | None:
        cm = await self.kube.read_configmap(ns, cm_name)
        if cm is not None and (verdict := ownership(cm, uid, name)) != "ours":
            # An earlier evaluation of this name's (not yet garbage-collected): its episodes are not ours.
            raise NotOurs("ConfigMap", cm_name, previous_life=verdict == "previous")
        return cm

    async def load(self, counted: Counted, ns: str, name: str, uid: str) -> None:
        if counted.loaded:
            return
        cm = await self.read_owned(ns, name, uid, names.results_configmap_name(name))
        named = build_results.shards_named(cm)
        found_cms: list[dict[str, Any] | None] = [cm]
        index = 1
        # Every shard the results ConfigMap names, and any written after it (a restart between the two).
        while index < results_shards.MAX_SHARDS:  # no more are ever written (`named` is at most this too)
            shard = await self.read_owned(ns, name, uid, results_shards.shard_name(name, index))
            if shard is None and index >= named:
                break
            found_cms.append(shard)
            index += 1
        found = await asyncio.to_thread(results_shards.read_back, found_cms, named)  # 20,000 records: seconds
        layout, missing = found.shards, found.missing
        counted.episodes = found.records
        counted.shards = layout
        counted.written = {i: len(s.members) for i, s in enumerate(layout) if i > 0}
        counted.unplaced = []
        if missing:
            lost = ", ".join(results_shards.shard_name(name, i) for i in missing)
            log.warning("%s/%s: record shard(s) %s are missing; their episodes are played again", ns, name, lost)
            events.post(ns, name, uid, "Warning", "ResultsShardMissing",
                        f"ConfigMap(s) {lost} of counted episode records are missing; the episodes they held "
                        "are not counted and a resumed job plays them again")
        if cm:
            doc = json.loads((cm.get("data") or {}).get(build_results.RESULTS_KEY, "{}") or "{}")
            counted.recoveries = [Recovery.model_validate(r) for r in doc.get("recoveries") or []]
            if counted.results is None and doc.get("results"):
                counted.results = Results.model_validate(doc["results"]).from_configmap()
        counted.loaded = True

    async def sync(self, counted: Counted, dashboard: Dashboard, job: JobView, info: JobInfo | None) -> None:
        """Read the episode lines the job added since the last pass (all of them after a restart)."""
        record = job.record
        if record is None or info is None or not info.driver_node_id:
            return
        if record.results is not None and record.results != counted.results:
            counted.results, counted.dirty = record.results, True
        if record.last_recovery is not None and record.last_recovery not in counted.recoveries:
            counted.recoveries.append(record.last_recovery)
            counted.dirty = True
            metrics.RECOVERIES.inc()
        total = record.episodes_this_attempt
        seen = counted.cursor.get(job.submission_id, 0)
        if total <= seen:
            return
        # The file has at least `total` lines, more when the job counted on since its status line:
        # a tail of the lines not read yet (two more: a line being written may sit at the end) may
        # then start after some of them. It is complete when its first line was read before (the
        # window reaches back into what is known) or it is the whole file; else a window twice as
        # long is asked for. The union dedups.
        want = total - seen + 2
        while True:
            text = await dashboard.tail_file(info.driver_node_id, job_channel.episodes_file_name(job.submission_id),
                                             want)
            records = job_channel.episode_records(text)
            if not records or len(records) + 1 < want or records[0].episode in counted.episodes:
                break
            want *= 2
        for r in records:
            if r.episode not in counted.episodes:
                counted.episodes[r.episode] = r
                counted.unplaced.append(r.episode)
                counted.dirty = True
        counted.cursor[job.submission_id] = total

    async def write(self, evaluation: SwarmEvaluation, uid: str, status: SwarmEvaluationStatus, counted: Counted,
                    *, final: bool, drop: bool) -> None:
        await self.load(counted, evaluation.metadata.namespace, evaluation.metadata.name, uid)
        # The full results or none: never status's copy (its top rows, no pairwise matrix), so the
        # ConfigMap never holds less than the job reported, and status is made from the same results.
        results = None
        if counted.results is not None:
            results = counted.results.model_copy(
                update={"results_config_map": names.results_configmap_name(evaluation.metadata.name)})
        layout = counted.shards
        store = evaluation.spec.checkpoint.storage_uri
        # With a store, records past the results ConfigMap's share are not kept here: no more placing.
        if (counted.unplaced or not layout) and not (store and len(layout) > 1):
            cap = self.settings.results_shard_bytes
            layout = await asyncio.to_thread(results_shards.place, layout, counted.unplaced, counted.episodes.__getitem__,
                                             lambda index: min(results_shards.budget(index), cap))
        cm = await asyncio.to_thread(  # the summary of 20,000 records takes a while: off the event loop
            build_results.build_results_configmap, evaluation, uid, records=list(counted.episodes.values()),
            progress=status.progress, results=results, recoveries=counted.recoveries, final=final,
            drop_records=drop, layout=layout,
        )
        if len(layout) > 1 and not drop and not store:
            # The shards before the ConfigMap that names them: a restart in between finds them anyway.
            ns, name = evaluation.metadata.namespace, evaluation.metadata.name
            for index, shard in enumerate(layout[1:], start=1):
                if counted.written.get(index) != len(shard.members):
                    await self.kube.apply_configmap(results_shards.build_shard_configmap(ns, name, uid, index, shard))
                    counted.written[index] = len(shard.members)
        await self.kube.apply_configmap(cm)
        counted.shards, counted.unplaced = layout, []
        counted.dirty = False

