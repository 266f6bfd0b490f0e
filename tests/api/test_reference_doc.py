"""docs/api.md is generated from the models and covers every field of spec and status."""

from __future__ import annotations

from pathlib import Path

from swarm_arena.api.crd import api_reference_markdown, openapi_schema
from tests.api.test_crd import _nodes

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "api.md"


def test_reference_doc_is_up_to_date() -> None:
    assert DOC.read_text() == api_reference_markdown(), (
        "docs/api.md is out of date with the models; regenerate it with "
        "`python -m swarm_arena.api.crd --reference > docs/api.md` and commit it"
    )


def test_reference_doc_lists_every_field() -> None:
    text = DOC.read_text()
    schema = openapi_schema()
    for section in ("spec", "status"):
        for path, _ in _nodes(schema["properties"][section], section):
            if path.endswith(("[]", ".*")) or path == section:
                continue
            assert f"| `{path}` |" in text, f"docs/api.md has no row for {path}"


def test_reference_doc_lists_every_cel_rule() -> None:
    text = DOC.read_text()
    for _, node in _nodes(openapi_schema()):
        for rule in node.get("x-kubernetes-validations", []):
            if rule["message"].startswith("metadata.name"):
                continue  # the root rule is about metadata, not spec or status
            assert rule["message"] in text
