"""The generated CRD: in sync with the models, structural, defaulted, and within CEL budgets."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import re2
import yaml
from pydantic import BaseModel

from swarm_arena.api import SwarmEvaluation, SwarmEvaluationSpec, SwarmEvaluationStatus
from swarm_arena.api.crd import build_crd, crd_yaml, openapi_schema
from swarm_arena.api.status import LeaderboardEntry, Progress, Results
from tests.api.crd_semantics import apply_defaults
from tests.api.manifests import GOOD
from tests.api.test_models import MINIMAL

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "arena.swarm.dev_swarmevaluations.yaml"
SCHEMA = openapi_schema()


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}" if path else name)
    if "items" in node:
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}.*")


def test_checked_in_crd_matches_the_models() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), (
        f"{CRD_FILE.relative_to(ROOT)} is out of date with the models; regenerate it with "
        f"`swarm-arena crd > {CRD_FILE.relative_to(ROOT)}` and commit it"
    )


def test_crd_identity_matches_api_md() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "swarmevaluations.arena.swarm.dev"
    assert spec["group"] == "arena.swarm.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "SwarmEvaluation"
    assert (spec["names"]["plural"], spec["names"]["singular"]) == ("swarmevaluations", "swarmevaluation")
    assert spec["names"]["shortNames"] == ["swe", "sweval"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Phase", "Progress", "Leader", "Age"]


def test_schema_is_structural() -> None:
    for path, node in _nodes(SCHEMA):
        where = path or "<root>"
        for banned in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "const"):
            assert banned not in node, f"{where}: `{banned}` in a CRD schema"
        assert "type" in node, f"{where}: no type"
        assert node.get("additionalProperties") is not False, f"{where}: additionalProperties false"
        assert not ("properties" in node and "additionalProperties" in node), f"{where}: both properties kinds"
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(bound, False), bool), f"{where}: {bound} must be a boolean in OpenAPI v3.0"
        if node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
            if path not in ("metadata",):
                assert "properties" in node or "additionalProperties" in node, f"{where}: untyped object"


def test_every_property_has_a_description() -> None:
    missing = [path for path, node in _nodes(SCHEMA) if path and not path.endswith(("[]", ".*"))
               and path != "metadata" and not node.get("description")]
    assert not missing, f"properties without a description (kubectl explain shows nothing): {missing}"


def test_metadata_is_left_to_the_api_server() -> None:
    # the API server refuses a CRD whose metadata schema says more than name/generateName
    assert SCHEMA["properties"]["metadata"] == {"type": "object"}


def test_free_form_params_keep_unknown_fields_and_string_maps_are_typed() -> None:
    spec = SCHEMA["properties"]["spec"]["properties"]
    assert spec["environment"]["properties"]["params"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["policies"]["items"]["properties"]["params"]["type"] == "object"
    group = spec["cluster"]["properties"]["workerGroups"]["items"]["properties"]
    assert group["nodeSelector"]["additionalProperties"] == {"type": "string"}
    assert spec["matchmaking"]["properties"]["assignments"]["additionalProperties"]["type"] == "string"


def test_enums_come_from_the_enum_classes() -> None:
    spec = SCHEMA["properties"]["spec"]["properties"]
    assert spec["rating"]["properties"]["method"]["enum"] == ["mean-return", "bradley-terry", "elo", "openskill"]
    assert spec["matchmaking"]["properties"]["mode"]["enum"] == ["fixed", "round-robin"]
    assert spec["execution"]["properties"]["placementStrategy"]["enum"] == [
        "PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"]
    assert SCHEMA["properties"]["status"]["properties"]["phase"]["enum"][0] == "Pending"


def _annotation_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside `X`, `X | None`, `list[X]` or `dict[str, X]`, if any."""
    args = [annotation]
    while args:
        tp = args.pop()
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp
        if typing.get_origin(tp) in (typing.Union, types.UnionType, list, dict):
            args.extend(typing.get_args(tp))
    return None


def _defaulted_fields(model: type[BaseModel], node: dict[str, Any], path: str) -> Iterator[tuple[str, Any, dict]]:
    if "items" in node:
        node = node["items"]
    for name, info in model.model_fields.items():
        wire = info.alias or name
        sub = node["properties"][wire]
        has_default = not info.is_required() and (info.default_factory is not None or info.default is not None)
        if has_default:
            yield f"{path}.{wire}", info, sub
        inner = _annotation_model(info.annotation)
        if inner is not None:
            yield from _defaulted_fields(inner, sub, f"{path}.{wire}")


@pytest.mark.parametrize(
    "model,section", [(SwarmEvaluationSpec, "spec"), (SwarmEvaluationStatus, "status")]
)
def test_every_defaulted_field_has_a_crd_default(model: type[BaseModel], section: str) -> None:
    missing = [path for path, _, sub in _defaulted_fields(model, SCHEMA["properties"][section], section)
               if "default" not in sub]
    assert not missing, f"fields with a model default but no CRD default: {missing}"


def test_nested_object_defaults_are_empty_objects() -> None:
    spec = SCHEMA["properties"]["spec"]["properties"]
    for name in ("matchmaking", "rating", "execution", "checkpoint", "faultTolerance"):
        assert spec[name]["default"] == {}, name
    assert spec["policies"]["items"]["properties"]["resources"]["default"] == {}


@pytest.mark.parametrize("doc", [MINIMAL, GOOD], ids=["minimal", "table"])
def test_server_side_defaults_equal_what_the_models_run(doc: dict[str, Any]) -> None:
    """`kubectl get -o yaml` after the API server defaulted it == the spec the arena will run."""
    defaulted = apply_defaults(SCHEMA, doc)
    assert defaulted["spec"] == SwarmEvaluation.model_validate(doc).spec.to_wire()


def test_patterns_compile_as_go_re2() -> None:
    patterns = [(path, node["pattern"]) for path, node in _nodes(SCHEMA) if "pattern" in node]
    assert len(patterns) >= 8
    for path, pattern in patterns:
        assert not any(t in pattern for t in ("(?=", "(?!", "(?<=", "(?<!")), f"{path}: lookaround"
        re2.compile(pattern)  # raises on anything RE2 (and so the API server) cannot take


def test_lists_and_maps_in_spec_are_bounded_for_cel_cost() -> None:
    for path, node in _nodes(SCHEMA["properties"]["spec"], "spec"):
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path}: list without maxItems (CEL cost estimate unbounded)"
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{path}: map without maxProperties"


def test_strings_compared_in_cel_rules_are_bounded() -> None:
    spec = SCHEMA["properties"]["spec"]["properties"]
    names = [
        spec["policies"]["items"]["properties"]["name"],
        spec["teams"]["items"]["properties"]["name"],
        spec["cluster"]["properties"]["workerGroups"]["items"]["properties"]["name"],
        spec["matchmaking"]["properties"]["assignments"]["additionalProperties"],
    ]
    assert all(n.get("maxLength", 10**9) <= 63 for n in names)


def _json_path(obj: Any, path: str) -> Any:
    for part in path.strip(".").replace("[", ".[").split("."):
        obj = obj[int(part[1:-1])] if part.startswith("[") else obj.get(part)
        if obj is None:
            return None
    return obj


def test_printer_columns_resolve_on_a_real_status() -> None:
    status = SwarmEvaluationStatus(
        phase="Running",
        progress=Progress(episodes_completed=7, episodes_total=20),
        results=Results(leaderboard=[
            LeaderboardEntry(policy="greedy", rating=3.0, ci_low=2.0, ci_high=4.0, mean_return=1.0, episodes=7),
            LeaderboardEntry(policy="random", rating=1.0, ci_low=0.0, ci_high=2.0, mean_return=0.2, episodes=7),
        ]),
    )
    obj = {"metadata": {"creationTimestamp": "2025-01-01T00:00:00Z"}, "status": status.to_wire()}
    columns = build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    shown = {c["name"]: _json_path(obj, c["jsonPath"]) for c in columns}
    assert shown == {"Phase": "Running", "Progress": "7/20", "Leader": "greedy", "Age": "2025-01-01T00:00:00Z"}


def test_crd_yaml_has_the_generated_header_and_stable_order() -> None:
    text = crd_yaml()
    assert text.startswith("# generated by `swarm-arena crd`; do not edit")
    assert text == crd_yaml()
    assert yaml.safe_load(text) == build_crd()
