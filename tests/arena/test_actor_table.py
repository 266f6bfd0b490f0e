"""The table of a run's named actors: which instance holds each name, where it lives, how often it
was replaced (pure bookkeeping: the actor class is a stand-in, no Ray runs)."""

from __future__ import annotations

from typing import Any

import pytest

from swarm_arena.arena.errors import EvaluationFailed
from swarm_arena.arena.recovery import ActorRecipe, ActorTable, Noted
from swarm_arena.arena.shard import ActorInfo


class _Handle:
    def __init__(self, name: str, serial: int) -> None:
        self.name, self.serial = name, serial

    def __repr__(self) -> str:
        return f"<{self.name}#{self.serial}>"


class _ActorClass:
    """What the table needs of a Ray actor class: `.options(...).remote(...)` gives a new handle."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    def options(self, **options: Any) -> _ActorClass:
        self.started.append(options)
        return self

    def remote(self, *args: Any) -> _Handle:
        return _Handle(self.started[-1]["name"], len(self.started))


@pytest.fixture(autouse=True)
def killed(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """`ray.kill` records instead: no Ray runs here (a real one would be started, or joined, on the first call)."""
    import ray

    calls: list[Any] = []
    monkeypatch.setattr(ray, "kill", lambda handle, no_restart=True: calls.append((handle, no_restart)))
    return calls


def _table(*names: str, max_restarts: int = 2) -> tuple[ActorTable, _ActorClass]:
    cls = _ActorClass()
    table = ActorTable(max_restarts)
    for name in names:
        table.create(ActorRecipe(name=name, cls=cls, args=(), options={}))
    return table, cls


def _info(name: str, node: str, instance: str) -> ActorInfo:
    return ActorInfo(name=name, node_id=node, instance=instance)


def test_a_late_answer_from_a_replaced_instance_does_not_put_it_back_on_the_lost_node(killed: list[Any]) -> None:
    table, _ = _table("a", "b")
    old = {n: table.handle(n) for n in ("a", "b")}
    for n in ("a", "b"):
        assert table.note_incarnation(n, old[n], _info(n, "node-A", f"{n}-1")) is Noted.SAME
    assert sorted(table.on_nodes(["node-A"])) == ["a", "b"]

    assert sorted(table.replace(table.on_nodes(["node-A"]))) == ["a", "b"]
    assert sorted(killed, key=repr) == sorted([(old["a"], True), (old["b"], True)], key=repr)  # for good
    assert all(table.handle(n) is not old[n] for n in ("a", "b"))
    # The old process outlived its node for a moment and answered a ping sent before the swap.
    assert table.note_incarnation("b", old["b"], _info("b", "node-A", "b-1")) is Noted.STALE
    assert table.on_nodes(["node-A"]) == []  # a second repair replaces nothing twice
    assert table.restarts("b") == 1 and table.generation("b") == 1

    # The replacement's own first answer: where it lives now; not a restart of its own.
    assert table.note_incarnation("b", table.handle("b"), _info("b", "node-B", "b-2")) is Noted.SAME
    assert table.on_nodes(["node-B"]) == ["b"] and table.lost_on("b") == "node-A"
    assert table.restarts("b") == 1 and table.generation("b") == 1


def test_ray_restarting_an_actor_in_place_is_counted_and_changes_its_generation() -> None:
    table, _ = _table("a", max_restarts=1)
    handle = table.handle("a")
    table.note_incarnation("a", handle, _info("a", "node-A", "a-1"))
    assert table.note_incarnation("a", handle, _info("a", "node-A", "a-1")) is Noted.SAME
    assert table.note_incarnation("a", handle, _info("a", "node-C", "a-2")) is Noted.RESTARTED
    assert table.generation("a") == 1 and table.restarts("a") == 1 and table.lost_on("a") == "node-A"
    with pytest.raises(EvaluationFailed, match=r"actor a was lost 2 times.*spec\.faultTolerance\.maxActorRestarts=1"):
        table.note_incarnation("a", handle, _info("a", "node-C", "a-3"))


def test_replace_skips_a_name_another_caller_already_swapped() -> None:
    table, cls = _table("a")
    seen = table.handle("a")
    assert table.replace(["a"]) == ["a"]
    # The run thread pinged `seen` before the repair swapped it: its replace must not swap again.
    assert table.replace(["a"], expected={"a": seen}) == []
    assert table.restarts("a") == 1 and len(cls.started) == 2
    # The replacement runs outside the placement group: no scheduling strategy, the budget left.
    assert cls.started[-1]["max_restarts"] == 1 and "scheduling_strategy" not in cls.started[-1]


def test_replacements_keep_off_every_node_reported_lost() -> None:
    # Until Ray's health checks agree, a lost node's resources look free: a replacement placed
    # there would hang. Every later replacement (a repair's or the run thread's) avoids them all.
    table, cls = _table("a", "b")
    table.replace(["a"], lost_nodes=["node-A"])
    assert cls.started[-1]["label_selector"] == {"ray.io/node-id": "!in(node-A)"}
    # Preferred, not required: a node reported lost that is alive after all (a one-node cluster)
    # still takes the replacement when no other node can.
    assert cls.started[-1]["fallback_strategy"] == [{"label_selector": {"ray.io/node-id": "in(node-A)"}}]
    table.replace(["b"], lost_nodes=["node-C"])
    table.replace(["a"])  # the run thread's own replacement, later
    assert cls.started[-1]["label_selector"] == {"ray.io/node-id": "!in(node-A,node-C)"}


def test_replacements_go_anywhere_when_no_node_was_reported_lost() -> None:
    table, cls = _table("a")
    table.replace(["a"])  # an actor that died on a live node may come back on it
    assert "label_selector" not in cls.started[-1]
