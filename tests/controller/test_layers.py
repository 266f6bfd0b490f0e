"""The controller's layers: it never imports the Ray runtime nor users' code, and lower layers
never import upper ones (ARCHITECTURE.md, "The operator's house")."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

CONTROLLER = Path(__file__).resolve().parents[2] / "operator" / "swarm_arena" / "controller"
# What the controller may import of the arena: nothing of the runtime (the CLI's `operator` command
# must start without Ray installed in the image).
PURE = ("swarm_arena.controller.names", "swarm_arena.controller.build_cluster", "swarm_arena.controller.build_job",
        "swarm_arena.controller.build_results", "swarm_arena.controller.decide", "swarm_arena.controller.losses",
        "swarm_arena.controller.conditions", "swarm_arena.controller.render")


def test_importing_the_whole_operator_loads_no_ray_and_no_arena_runtime() -> None:
    code = (
        "import sys, json, swarm_arena.controller.handlers, swarm_arena.controller.main, swarm_arena.controller.leader;"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'swarm_arena.arena')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_the_pure_layer_imports_no_client_and_no_handler() -> None:
    for module in PURE:
        path = CONTROLLER / f"{module.rsplit('.', 1)[1]}.py"
        bad = {m for m in _imports(path) if m.startswith(("kopf", "kubernetes", "aiohttp", "swarm_arena.controller.handlers",
                                                          "swarm_arena.controller.reconciler",
                                                          "swarm_arena.controller.kube", "swarm_arena.controller.dashboard"))}
        assert not bad, f"{module} imports {bad}"


def test_clients_never_import_the_handlers() -> None:
    for name in ("kube.py", "dashboard.py", "reconciler.py"):
        assert not {m for m in _imports(CONTROLLER / name) if "handlers" in m}, name
