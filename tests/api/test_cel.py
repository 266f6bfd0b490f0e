"""The CRD's CEL rules, evaluated with cel-python, refuse exactly what the Python validators refuse.

This proves the `x-kubernetes-validations` in crds/ right without an API server: each bad
manifest of the shared table, defaulted as the API server defaults it, either fails the CEL
rule that names the same field (cross-field cases) or passes every rule (cases the schema
itself, an import or the envelope catches); the good manifest and the examples pass them all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from swarm_arena.api.crd import openapi_schema
from tests.api.crd_semantics import apply_defaults, cel_failures, compile_rule
from tests.api.manifests import BAD, GOOD, Bad
from tests.api.test_crd import _nodes

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
SCHEMA = openapi_schema()


def _failures(doc: dict) -> list[tuple[str, str]]:
    return cel_failures(SCHEMA, apply_defaults(SCHEMA, doc))


def test_every_rule_compiles_and_names_a_field() -> None:
    rules = [(path, rule) for path, node in _nodes(SCHEMA) for rule in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 14
    for path, rule in rules:
        compile_rule(rule["rule"])
        assert rule["message"], f"{path}: rule without a message"
        assert rule.get("fieldPath") or path or "metadata.name" in rule["message"]


def test_good_manifest_passes_every_rule() -> None:
    assert _failures(GOOD) == []


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_every_rule(example: Path) -> None:
    docs = [d for d in yaml.safe_load_all(example.read_text()) if d and d.get("kind") == "SwarmEvaluation"]
    assert docs
    for doc in docs:
        assert _failures(doc) == []


@pytest.mark.parametrize("case", [b for b in BAD if b.layer == "cel"], ids=lambda b: b.id)
def test_cross_field_rules_refuse_what_python_refuses_at_the_same_field(case: Bad) -> None:
    failures = _failures(case.manifest())
    assert failures, f"{case.id}: the Python validators refuse it, every CEL rule accepts it"
    assert any(case.api_path in f"{path}: {message}" for path, message in failures), (
        f"{case.id}: expected a CEL failure naming `{case.api_path}`, got {failures}"
    )
    assert all("[error:" not in message for _, message in failures), failures


@pytest.mark.parametrize("case", [b for b in BAD if b.layer != "cel"], ids=lambda b: b.id)
def test_rules_accept_what_only_the_schema_or_imports_refuse(case: Bad) -> None:
    assert _failures(case.manifest()) == []
