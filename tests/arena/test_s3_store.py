"""Durable checkpoints on `s3://` against a real S3-compatible server (SeaweedFS, started by the
`s3_server` fixture): the store writes, reads back, lists and deletes through pyarrow.fs with the
endpoint and credentials users export (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), and an
evaluation on local Ray that loses its head mid-run resumes from the bucket with the numbers of
the uninterrupted run.

`gs://` goes through the same `pyarrow.fs.FileSystem.from_uri` call; no GCS server is started here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from swarm_arena.api.report import EpisodeRecord
from swarm_arena.arena.checkpoint import DurableStore, open_store, with_s3_endpoint
from swarm_arena.arena.checkpoint_codec import decode_checkpoint
from swarm_arena.arena.runner import run_evaluation
from tests.arena.conftest import foraging_evaluation
from tests.arena.s3server import S3Server
from tests.arena.test_action_log import _play_in_chunks, _restored_rewards
from tests.arena.test_durable_checkpoints import _checkpoint, _equal
from tests.arena.test_exact_recovery import (
    NAME,
    _evaluation,
    _same_numbers,
    lose_the_head,
    ray_with_test_code,
    reference,  # noqa: F401 - the uninterrupted run, a module fixture here too
    stored_names,
)


@pytest.fixture(scope="module")
def s3_env(s3_server: S3Server) -> Iterator[S3Server]:
    """The server's endpoint and credentials exported as a user would, for this module (Ray,
    started after, hands them to its workers)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in s3_server.env().items():
            mp.setenv(name, value)
        mp.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        yield s3_server


@pytest.fixture(scope="module")
def local_ray_with_test_code(s3_env) -> Iterator[None]:
    yield from ray_with_test_code()


def _uri(server: S3Server) -> tuple[str, str]:
    """A fresh `s3://bucket/prefix` and its prefix."""
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    return f"s3://{server.bucket}/{prefix}", prefix


def _open(uri: str) -> DurableStore:
    evaluation = foraging_evaluation("dur", checkpoint={"intervalSteps": 10, "storageURI": uri})
    store = open_store(evaluation.spec, evaluation.qualified_name)
    assert isinstance(store, DurableStore)
    return store


def test_the_store_writes_reads_lists_and_deletes_on_s3(s3_env: S3Server) -> None:
    uri, prefix = _uri(s3_env)
    store = _open(uri)
    record = EpisodeRecord(episode=0, pairing={"all": "greedy"}, returns={"greedy": 1.5}, agents={"greedy": 5},
                           steps=30, agent_steps=150)  # fmt: skip
    store.save_record(record)
    store.save_checkpoint(_checkpoint(episode=1))
    store.save_checkpoint(_checkpoint(episode=2))
    keys = s3_env.keys(prefix)
    fingerprint = store.prefix.rsplit("/", 1)[-1]
    assert stored_names(keys) == sorted(["episodes/000000.json", "inflight/000001.npz", "inflight/000002.npz",
                                         f"{fingerprint}/layout.json"])  # fmt: skip
    assert not [k for k in keys if "/.tmp-" in k]  # every upload was moved into place
    inflight = s3_env.filesystem().open_input_stream(f"{s3_env.bucket}/{prefix}/{store.prefix}/inflight/000001.npz")
    assert _equal(decode_checkpoint(inflight.read()).env_state, _checkpoint(episode=1).env_state)

    reopened = _open(uri)  # a later attempt, on another head
    assert reopened.records() == {0: record}
    assert sorted(reopened.checkpoints()) == [1, 2]
    assert _equal(reopened.checkpoint(1).env_state, _checkpoint(episode=1).env_state)
    reopened.drop_checkpoint(1)
    assert [k for k in stored_names(s3_env.keys(prefix)) if k.startswith("inflight/")] == ["inflight/000002.npz"]
    assert sorted(_open(uri).checkpoints()) == [2]


def test_a_generic_environments_action_log_round_trips_through_s3(s3_env: S3Server) -> None:
    uri, prefix = _uri(s3_env)
    store = _open(uri)
    _, _, expected = _play_in_chunks(store)
    assert [k for k in stored_names(s3_env.keys(prefix)) if k.startswith("000000/")] == [
        "000000/000000.npy", "000000/000010.npy", "000000/000020.npy"]  # fmt: skip
    actual = _restored_rewards(_open(uri))
    assert all(np.array_equal(e, a) for e, a in zip(expected, actual))
    _open(uri).drop_checkpoint(0)
    assert not [k for k in s3_env.keys(prefix) if "/actions/" in k]


def test_wrong_credentials_fail_the_store_not_silently(s3_env: S3Server, monkeypatch) -> None:
    uri, _ = _uri(s3_env)
    _open(uri).save_record(EpisodeRecord(episode=0, pairing={"all": "greedy"}, returns={"greedy": 1.0},
                                         agents={"greedy": 5}, steps=30, agent_steps=150))  # fmt: skip
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(OSError, match=rf"spec\.checkpoint\.storageURI '{uri}': .*SIGNATURE_DOES_NOT_MATCH"):
        _open(uri)


def test_the_endpoint_comes_from_the_aws_variables() -> None:
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:8333"}
    assert with_s3_endpoint("s3://b/p", env) == "s3://b/p?endpoint_override=127.0.0.1%3A8333&scheme=http"
    both = {**env, "AWS_ENDPOINT_URL_S3": "https://s3.example:9000/"}  # the S3-specific one wins
    assert with_s3_endpoint("s3://b/p", both) == "s3://b/p?endpoint_override=s3.example%3A9000&scheme=https"
    assert with_s3_endpoint("s3://b/p?region=eu-west-1", env).startswith("s3://b/p?region=eu-west-1&endpoint_override=")
    own = "s3://b/p?endpoint_override=minio:9000&scheme=http"
    assert with_s3_endpoint(own, env) == own  # an endpoint in the URI wins
    assert with_s3_endpoint("s3://b/p", {}) == "s3://b/p"
    assert with_s3_endpoint("gs://b/p", env) == "gs://b/p"
    with pytest.raises(ValueError, match=r"storageURI.*AWS_ENDPOINT_URL='127.0.0.1:8333' must be http\(s\)://host"):
        with_s3_endpoint("s3://b/p", {"AWS_ENDPOINT_URL": "127.0.0.1:8333"})


@pytest.mark.ray
@pytest.mark.timeout(400)
def test_a_lost_head_resumes_exactly_from_s3(s3_env: S3Server, reference, tmp_path: Path) -> None:  # noqa: F811
    """tests/arena/test_exact_recovery.py's lost head, with the durable store in the bucket: the
    re-submitted run finds episode 0 counted and episode 1's checkpoint there, and ends with the
    numbers of the run that lost nothing."""
    uri, prefix = _uri(s3_env)
    gate = tmp_path / "gate"
    gate.mkdir()
    lose_the_head(gate, uri, lambda: stored_names(s3_env.keys(prefix)))
    (gate / "open").touch()
    resumed = run_evaluation(_evaluation(gate, hold=(1, 20), store=uri))
    assert resumed.progress.episodes_completed == 2
    keys = s3_env.keys(prefix)
    assert len({k.split("/")[2] for k in keys}) == 1 and all(k.startswith(f"default/{NAME}/") for k in keys)
    assert not [k for k in keys if "/inflight/" in k]
    _same_numbers(resumed, reference)


def test_a_recording_in_a_bucket_replays_from_its_s3_uri(s3_env: S3Server, local_ray_with_test_code, capsys) -> None:
    """spec.recording on s3:// goes through the same pyarrow.fs files as checkpoints, and
    `swarm-arena replay` reads it back from the URI status gives."""
    from swarm_arena.cli import main

    uri, prefix = _uri(s3_env)
    evaluation = foraging_evaluation(
        "rec", environment={"factory": "foraging", "params": {"agents": 30}, "maxSteps": 12},
        policies=[{"name": "greedy", "factory": "greedy"}], episodes=2, recording={"storageURI": uri},
    )  # fmt: skip
    recordings = run_evaluation(evaluation).results.recordings
    assert recordings is not None and recordings.episodes == "0-1"
    assert recordings.uri.startswith(f"{uri}/default/rec/") and recordings.uri.endswith("/recording")
    names = {k.split("/recording/", 1)[1] for k in s3_env.keys(prefix) if "/recording/" in k}
    assert {"manifest.json", "steps/000001.parquet", "episodes/000001.parquet"} <= names
    assert main(["replay", recordings.uri]) == 0
    assert capsys.readouterr().out.count("every step and return as recorded") == 2
