"""Kubernetes Events on the evaluation: every phase change and recovery (posted by kopf, async)."""

from __future__ import annotations

import kopf

from swarm_arena.api.resource import API_VERSION, KIND


def _ref(namespace: str, name: str, uid: str) -> dict[str, object]:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"namespace": namespace, "name": name, "uid": uid}}


def post(namespace: str, name: str, uid: str, type_: str, reason: str, message: str) -> None:
    """Queue an Event; kopf posts it from its own task (never blocks, never fails the caller)."""
    kopf.event(_ref(namespace, name, uid), type=type_, reason=reason, message=message[:1000])
