"""`spec.recording`: off by default, and which episodes its selectors pick."""

from __future__ import annotations

import copy

from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.spec import RecordingEpisodes
from tests.api.manifests import GOOD


def _spec(recording: dict | None):
    doc = copy.deepcopy(GOOD)
    if recording is not None:
        doc["spec"]["recording"] = recording
    return SwarmEvaluation.model_validate(doc).spec


def test_recording_is_off_by_default() -> None:
    assert _spec(None).recording is None


def test_recordings_go_to_the_checkpoint_store_unless_told_otherwise() -> None:
    spec = _spec({})
    assert spec.recording is not None and spec.recording.uri(spec.checkpoint) == "file:///tmp/swarm-arena-table"
    spec = _spec({"storageURI": "s3://bucket/recordings"})
    assert spec.recording is not None and spec.recording.uri(spec.checkpoint) == "s3://bucket/recordings"


def test_no_selector_records_every_episode() -> None:
    assert all(RecordingEpisodes().selects(i, {"all": "a"}) for i in range(20))


def test_selectors_pick_the_union_of_first_every_and_pairings() -> None:
    episodes = RecordingEpisodes(first=2, every=5, pairings=[{"red": "b"}])
    pairing = {0: {"red": "a", "blue": "b"}, 7: {"red": "b", "blue": "a"}}
    picked = [i for i in range(12) if episodes.selects(i, pairing.get(i, {"red": "a", "blue": "b"}))]
    assert picked == [0, 1, 5, 7, 10]


def test_a_pairing_matches_a_team_shared_by_several_policies() -> None:
    episodes = RecordingEpisodes(pairings=[{"all": "b"}])
    assert episodes.selects(3, {"all": "a,b"}) and not episodes.selects(3, {"all": "a,c"})
