"""`swarm-arena validate`: every problem named by its field path, all problems at once."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from swarm_arena.api import SwarmEvaluation
from swarm_arena.api.validation import ManifestError, load_and_validate, validate_manifest
from tests.api.manifests import BAD, GOOD, Bad

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))


def _problems(doc: dict, check_imports: bool = True) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        validate_manifest(doc, check_imports=check_imports)
    assert caught.value.problems, "ManifestError without problems"
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_the_table_is_big_enough() -> None:
    assert len(BAD) >= 15
    assert len({b.id for b in BAD}) == len(BAD)


def test_good_manifest_validates_with_imports() -> None:
    evaluation = validate_manifest(copy.deepcopy(GOOD), check_imports=True)
    assert isinstance(evaluation, SwarmEvaluation)
    assert evaluation.spec.matchmaking.assignments == {"red": "greedy", "blue": "random"}


@pytest.mark.parametrize("case", BAD, ids=lambda b: b.id)
def test_bad_manifest_names_the_field(case: Bad) -> None:
    problems = _problems(case.manifest())
    assert any(p.startswith(f"{case.path}: ") for p in problems), (
        f"expected a problem at `{case.path}`, got: {problems}"
    )


@pytest.mark.parametrize("case", [b for b in BAD if b.layer == "import"], ids=lambda b: b.id)
def test_unresolvable_factories_pass_without_import_checks(case: Bad) -> None:
    validate_manifest(case.manifest(), check_imports=False)


def test_every_problem_is_reported_at_once() -> None:
    doc = copy.deepcopy(GOOD)
    doc["spec"]["episodes"] = 0
    doc["spec"]["policies"][0]["name"] = "Bad_Name"
    doc["spec"]["checkpoint"]["storageURI"] = "ftp://x"
    doc["spec"]["environment"]["factory"] = "swarm_arena_no_such_module:env"
    problems = _problems(doc)
    paths = sorted(p.split(": ", 1)[0] for p in problems)
    assert paths == [
        "spec.checkpoint.storageURI", "spec.environment.factory", "spec.episodes", "spec.policies[0].name"]


def test_cross_field_problems_are_all_reported_with_their_own_paths() -> None:
    doc = copy.deepcopy(GOOD)
    doc["spec"]["matchmaking"]["assignments"] = {"red": "ghost", "green": "random"}
    problems = _problems(doc)
    assert any(p.startswith("spec.matchmaking.assignments.red: ") and "'ghost'" in p for p in problems)
    assert any(p.startswith("spec.matchmaking.assignments.green: ") and "'green'" in p for p in problems)
    assert any(p.startswith("spec.matchmaking.assignments: ") and "missing: blue" in p for p in problems)


def test_a_typo_gets_a_suggestion() -> None:
    doc = copy.deepcopy(GOOD)
    doc["spec"]["execution"] = {"agentsPerShards": 10}
    [problem] = _problems(doc)
    assert problem == "spec.execution.agentsPerShards: unknown field; did you mean `agentsPerShard`?"


def test_pattern_problems_say_what_is_expected() -> None:
    doc = copy.deepcopy(GOOD)
    doc["spec"]["policies"][0]["resources"]["memory"] = "lots"
    [problem] = _problems(doc)
    assert "Kubernetes quantity" in problem and "'lots'" in problem


def test_not_a_mapping() -> None:
    with pytest.raises(ManifestError, match="must be a mapping"):
        validate_manifest(["not", "an", "object"])  # type: ignore[arg-type]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate(example: Path) -> None:
    evaluation = load_and_validate(example, check_imports=True)
    assert evaluation.metadata.name


# ---- files -----------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "eval.yaml"
    path.write_text(text)
    return path


def test_load_picks_the_swarm_evaluation_out_of_several_documents(tmp_path: Path) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "arena"}}
    path = _write(tmp_path, yaml.safe_dump_all([namespace, GOOD]))
    assert load_and_validate(path).metadata.name == "table"


def test_load_reports_yaml_syntax_errors_with_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "apiVersion: arena.swarm.dev/v1alpha1\nspec:\n  episodes: [1, 2\n")
    with pytest.raises(ManifestError) as caught:
        load_and_validate(path)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:") and "YAML syntax error" in problem
    assert ":4:" in problem or ":3:" in problem


def test_load_names_the_wrong_kind(tmp_path: Path) -> None:
    path = _write(tmp_path, yaml.safe_dump({**GOOD, "kind": "RayJob"}))
    with pytest.raises(ManifestError) as caught:
        load_and_validate(path)
    assert caught.value.problems == ["kind: must be SwarmEvaluation (got 'RayJob')"]


def test_load_names_the_wrong_api_version(tmp_path: Path) -> None:
    path = _write(tmp_path, yaml.safe_dump({**GOOD, "apiVersion": "arena.swarm.dev/v1beta1"}))
    with pytest.raises(ManifestError) as caught:
        load_and_validate(path)
    assert caught.value.problems == ["apiVersion: must be arena.swarm.dev/v1alpha1 (got 'arena.swarm.dev/v1beta1')"]


def test_load_without_any_swarm_evaluation(tmp_path: Path) -> None:
    docs = [{"apiVersion": "v1", "kind": "Namespace"}, {"apiVersion": "v1", "kind": "ConfigMap"}]
    path = _write(tmp_path, yaml.safe_dump_all(docs))
    with pytest.raises(ManifestError, match=r"no document with kind: SwarmEvaluation \(kinds found: ConfigMap, Namespace\)"):
        load_and_validate(path)


def test_load_prefixes_problems_with_the_document_when_there_are_several(tmp_path: Path) -> None:
    bad = copy.deepcopy(GOOD)
    bad["spec"]["episodes"] = 0
    path = _write(tmp_path, yaml.safe_dump_all([GOOD, bad]))
    with pytest.raises(ManifestError) as caught:
        load_and_validate(path)
    assert caught.value.problems[0].startswith("document 2: spec.episodes: ")


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        load_and_validate(tmp_path / "nope.yaml")


def test_user_code_is_imported_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    marker = tmp_path / "imported"
    (tmp_path / "swa_user_factory.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef parallel_env(**kw):\n    raise RuntimeError('never called')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    doc = copy.deepcopy(GOOD)
    doc["spec"]["environment"]["factory"] = "swa_user_factory:parallel_env"
    validate_manifest(copy.deepcopy(doc))  # the default: the user's module is not even imported
    load_and_validate(_write(tmp_path, yaml.safe_dump(doc)))
    assert not marker.exists() and "swa_user_factory" not in sys.modules
    validate_manifest(copy.deepcopy(doc), check_imports=True)
    assert marker.exists()
    sys.modules.pop("swa_user_factory", None)
