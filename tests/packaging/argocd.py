"""Run manifests/gitops/argocd-health.lua as Argo CD does: Lua 5.1 (gopher-lua's dialect), the
object as a global table `obj`, the returned table's `status` and `message` read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = ROOT / "manifests" / "gitops" / "argocd-health.lua"
# Argo CD's health statuses.
STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) the health check gives `obj`."""
    from lupa.lua51 import LuaRuntime

    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    assert result is not None, "the health check returned nothing"
    status, message = result["status"], result["message"]
    assert status in STATUSES, f"not an Argo CD health status: {status!r}"
    return str(status), str(message or "")
