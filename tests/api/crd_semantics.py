"""What the API server does with our CRD's schema, re-done in Python for tests without a server.

* `apply_defaults`: structural defaulting (a property that is absent gets its `default`, then
  the defaulting recurses into it, so `{}` object defaults fill their inner defaults);
* `cel_failures`: every `x-kubernetes-validations` rule evaluated with cel-python at its place
  in the object, `self` typed by the schema as the API server types it (`number` is a double,
  even when the YAML says `1`), each failure reported at `<path><fieldPath>` like the server.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
from celpy import celtypes

_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """A defaulted deep copy of `value`, as the API server stores it."""
    value = copy.deepcopy(value)
    _default_in_place(schema, value)
    return value


def _default_in_place(schema: dict[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _default_in_place(sub, value[name])
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for item in value.values():
                _default_in_place(additional, item)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _default_in_place(schema["items"], item)


def to_cel(schema: dict[str, Any], value: Any) -> Any:
    """`value` as the CEL value the API server builds from the schema's types."""
    kind = schema.get("type")
    if schema.get("x-kubernetes-preserve-unknown-fields") or kind is None:
        return celpy.json_to_cel(value)
    if kind == "object":
        props = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = props.get(key, additional if isinstance(additional, dict) else {})
            out[celtypes.StringType(key)] = to_cel(sub, item)
        return celtypes.MapType(out)
    if kind == "array":
        return celtypes.ListType([to_cel(schema.get("items", {}), item) for item in value])
    if kind == "number":
        return celtypes.DoubleType(float(value))
    if kind == "integer":
        return celtypes.IntType(value)
    if kind == "boolean":
        return celtypes.BoolType(value)
    return celtypes.StringType(value)


def _program(rule: str) -> Any:
    if rule not in _PROGRAMS:
        _PROGRAMS[rule] = _ENV.program(_ENV.compile(rule))
    return _PROGRAMS[rule]


def compile_rule(rule: str) -> None:
    """Raise when cel-python cannot parse the rule."""
    _program(rule)


def cel_failures(schema: dict[str, Any], value: Any, path: str = "") -> list[tuple[str, str]]:
    """(`<path><fieldPath>`, message) for every rule that does not evaluate to true."""
    out: list[tuple[str, str]] = []
    for rule in schema.get("x-kubernetes-validations", []):
        result = _program(rule["rule"]).evaluate({"self": to_cel(schema, value)})
        if result is not True and result != celtypes.BoolType(True):
            detail = rule["message"] if isinstance(result, celtypes.BoolType) else f"{rule['message']} [error: {result}]"
            out.append((path + rule.get("fieldPath", ""), detail))
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                out.extend(cel_failures(sub, value[name], f"{path}.{name}" if path else name))
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out.extend(cel_failures(schema["items"], item, f"{path}[{i}]"))
    return out
