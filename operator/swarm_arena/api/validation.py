"""Checking a manifest offline, the way the API server and the operator would.

`swarm-arena validate` and `swarm-arena run` start here. Every problem is reported as
`<field path>: <message>` with the wire names the user typed (`spec.policies[1].name`,
`spec.matchmaking.assignments.red`), all problems at once, so one edit fixes a manifest:

* schema problems come from pydantic, their locations turned into field paths and their
  messages into advice (`unknown field; did you mean ...`, `must be a DNS-1123 label`);
* cross-field problems carry their own locations (`spec.SpecError`), so they name the field
  too and not just the object that holds it;
* factories are resolved (optional): an import path that does not resolve is what only the
  operator could otherwise find out, as a `Failed` evaluation;
* a built-in environment's params are checked against its bounds (`foraging` with two billion
  agents is refused naming `spec.environment.params.agents`, before anything is allocated).
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from swarm_arena.api.resource import API_VERSION, KIND, SwarmEvaluation
from swarm_arena.api.spec import (
    DNS1123_LABEL,
    FACTORY_PATTERN,
    QUANTITY_PATTERN,
    RAY_ADDRESS_PATTERN,
    STORAGE_URI_PATTERN,
    Loc,
    SpecError,
    format_path,
)

_PATTERN_ADVICE = {
    DNS1123_LABEL: "must be a DNS-1123 label: lowercase letters, digits and '-', "
    "starting and ending with a letter or digit",
    FACTORY_PATTERN: "must be `module:callable` (e.g. `magent2.environments.battle_v4:parallel_env`) "
    "or a built-in name (e.g. `foraging`, `random`)",
    QUANTITY_PATTERN: "must be a Kubernetes quantity such as `512Mi`, `2Gi` or `1.5G`",
    STORAGE_URI_PATTERN: "must be a URI starting with `file://`, `s3://` or `gs://`",
    RAY_ADDRESS_PATTERN: "must be a URL such as `http://ray-head:8265` or `ray://ray-head:10001`",
    r"^[0-9]+\.[0-9]+\.[0-9]+$": "must be a version such as `2.60.0`",
}


class ManifestError(ValueError):
    """A manifest that would be refused; `problems` holds one `<field path>: <message>` each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# ---- where a location points in the models ---------------------------------------------------


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _wire_names(model: type[BaseModel]) -> dict[str, Any]:
    return {(f.alias or name): f.annotation for name, f in model.model_fields.items()}


def _fields_at(loc: Loc) -> list[str] | None:
    """The wire field names of the object at `loc`, when that object is one of our models."""
    tp: Any = SwarmEvaluation
    for part in loc:
        tp = _unwrap_optional(tp)
        if _is_model(tp) and isinstance(part, str):
            tp = _wire_names(tp).get(part)
        elif typing.get_origin(tp) in (list, dict):
            tp = typing.get_args(tp)[-1]
        else:
            return None
    tp = _unwrap_optional(tp)
    return list(_wire_names(tp)) if _is_model(tp) else None


# ---- pydantic errors as field problems -------------------------------------------------------


def _shown(value: Any) -> str | None:
    if isinstance(value, (str, int, float, bool)):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return None


def _message(error: dict[str, Any]) -> str:
    kind, loc, ctx = error["type"], tuple(error["loc"]), error.get("ctx") or {}
    if kind == "extra_forbidden":
        known = _fields_at(loc[:-1]) or []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"known fields: {', '.join(known)}" if known else ""
        return "unknown field" + (f"; {hint}" if hint else "")
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error" and loc in (("apiVersion",), ("kind",)):
        expected = API_VERSION if loc == ("apiVersion",) else KIND
        message = f"must be {expected}"
    elif kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERN_ADVICE:
        message = _PATTERN_ADVICE[ctx["pattern"]]
    else:
        message = error["msg"]
    got = _shown(error.get("input"))
    return f"{message} (got {got})" if got is not None else message


def _located(exc: ValidationError) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, SpecError):
            out.extend(((*loc, *sub), message) for sub, message in cause.problems)
        else:
            out.append((loc, _message(error)))
    return out


# ---- factories -------------------------------------------------------------------------------


def _factory_fields(doc: dict[str, Any]) -> list[tuple[Loc, str, str]]:
    """(location, factory string, kind) for every factory the manifest names."""
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return []
    out: list[tuple[Loc, str, str]] = []
    environment = spec.get("environment")
    if isinstance(environment, dict) and isinstance(environment.get("factory"), str):
        out.append((("spec", "environment", "factory"), environment["factory"], "environment"))
    policies = spec.get("policies")
    for i, policy in enumerate(policies if isinstance(policies, list) else []):
        if isinstance(policy, dict) and isinstance(policy.get("factory"), str):
            out.append((("spec", "policies", i, "factory"), policy["factory"], "policy"))
    return out


def _factory_problems(doc: dict[str, Any], skip: set[Loc]) -> list[tuple[Loc, str]]:
    from swarm_arena.arena.registry import load_environment_factory, load_policy_factory

    loaders = {"environment": load_environment_factory, "policy": load_policy_factory}
    out: list[tuple[Loc, str]] = []
    for loc, factory, kind in _factory_fields(doc):
        if loc in skip:
            continue
        try:
            loaders[kind](factory)
        except Exception as exc:  # importing user code can raise anything; report it, never crash
            out.append((loc, f"cannot resolve {factory!r}: {exc}"))
    return out


# Built-in environments whose params can be checked without building them (an absurd size must
# be refused here, not allocate for a minute at run time and die with an empty MemoryError).
_BUILTIN_PARAM_CHECKS = {"foraging": "swarm_arena.arena.envs.foraging_params:param_problems"}


def _builtin_param_problems(evaluation: SwarmEvaluation) -> list[tuple[Loc, str]]:
    import importlib

    environment = evaluation.spec.environment
    target = _BUILTIN_PARAM_CHECKS.get(environment.factory)
    if target is None:
        return []
    module, _, name = target.partition(":")
    check = getattr(importlib.import_module(module), name)
    return [(("spec", "environment", "params", param), message) for param, message in check(environment.params)]


# ---- the public face -------------------------------------------------------------------------


def validate_manifest(doc: Any, *, check_imports: bool = False) -> SwarmEvaluation:
    """The SwarmEvaluation in `doc`, or ManifestError listing every problem with its field path.

    `check_imports=True` also imports the user's factories (`module:callable`) to check they
    resolve: that runs the user's code, so only where it runs anyway (the job, `swarm-arena run`),
    never by default and never in the operator."""
    if not isinstance(doc, dict):
        raise ManifestError([f"<document>: must be a mapping (a Kubernetes object), got {type(doc).__name__}"])
    problems: list[tuple[Loc, str]] = []
    evaluation = None
    try:
        evaluation = SwarmEvaluation.model_validate(doc)
    except ValidationError as exc:
        problems.extend(_located(exc))
    if check_imports:
        problems.extend(_factory_problems(doc, skip={loc for loc, _ in problems}))
    if evaluation is not None:
        problems.extend(_builtin_param_problems(evaluation))
    if problems or evaluation is None:
        raise ManifestError([f"{format_path(loc) or '<document>'}: {message}" for loc, message in problems])
    return evaluation


def _yaml_documents(path: Path) -> list[Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ManifestError([f"{path}: cannot read ({exc.strerror or exc})"]) from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        what = getattr(exc, "problem", None) or str(exc)
        raise ManifestError([f"{where}: YAML syntax error: {what}"]) from None


def load_and_validate(path: str | Path, *, check_imports: bool = False) -> SwarmEvaluation:
    """Read a YAML file (several documents allowed) and validate its SwarmEvaluation(s).

    Returns the first SwarmEvaluation; with several, each is checked and problems are
    prefixed with `document N:` (N counts the file's documents, from 1).
    """
    path = Path(path)
    docs = _yaml_documents(path)
    if not docs:
        raise ManifestError([f"{path}: no YAML documents; expected a {KIND} manifest"])
    chosen = [(n, d) for n, d in enumerate(docs, 1) if isinstance(d, dict) and d.get("kind") == KIND]
    if not chosen:
        if len(docs) == 1:
            validate_manifest(docs[0], check_imports=False)  # names `kind` / `apiVersion` and raises
        kinds = ", ".join(sorted({str(d.get("kind")) for d in docs if isinstance(d, dict)})) or "none"
        raise ManifestError([f"kind: no document with kind: {KIND} (kinds found: {kinds})"])
    problems: list[str] = []
    first = None
    for n, doc in chosen:
        try:
            evaluation = validate_manifest(doc, check_imports=check_imports)
        except ManifestError as exc:
            prefix = f"document {n}: " if len(chosen) > 1 else ""
            problems.extend(prefix + p for p in exc.problems)
        else:
            first = first or evaluation
    if problems or first is None:
        raise ManifestError(problems)
    return first
