"""The built-in foraging world's parameters: their bounds and checks, with no numpy, gymnasium or
PettingZoo, so the operator (whose image has none of them) refuses bad `environment.params` of
every evaluation without importing the environment (swarm_arena.api.validation)."""

from __future__ import annotations

import math
import numbers
from typing import Any

#: Bounds that keep one environment within a machine: 1,000,000 agents need about 3 GB for the
#: world and 300 MB of observations per step (docs/environments-and-policies.md).
MAX_AGENTS = 1_000_000
MAX_CELLS = 25_000_000
MAX_VIEW_RADIUS = 32
MAX_OBSERVATION_BYTES = 2 << 30
PARAMS = ("agents", "grid_size", "food", "regrowth", "view_radius", "step_cost", "max_cycles", "render_mode")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def param_problems(params: dict[str, Any]) -> list[tuple[str, str]]:
    """(param, what is wrong with it) for every bad `environment.params` of foraging; cheap and
    allocation-free, so `swarm-arena validate` refuses absurd sizes before anything is built."""
    problems: list[tuple[str, str]] = []
    for name in params:
        if name not in PARAMS:
            close = [p for p in PARAMS if p.replace("_", "") == str(name).replace("_", "").lower()]
            hint = f"; did you mean `{close[0]}`?" if close else f"; foraging takes {', '.join(PARAMS)}"
            problems.append((name, f"is not a foraging parameter{hint}"))
    agents = params.get("agents")
    if "agents" not in params:
        problems.append(("agents", "is required: how many agents (e.g. agents: 1000)"))
    elif not _is_int(agents) or not 1 <= agents <= MAX_AGENTS:
        problems.append(("agents", f"must be an integer in [1, {MAX_AGENTS:,}], got {agents!r}"))
        agents = None
    grid = params.get("grid_size")
    side = None
    if grid is not None:
        if not _is_int(grid) or not 1 <= grid <= math.isqrt(MAX_CELLS):
            problems.append(("grid_size", f"must be an integer in [1, {math.isqrt(MAX_CELLS):,}], got {grid!r}"))
        else:
            side = int(grid)
    elif agents is not None:
        side = default_grid_size(agents)
    food = params.get("food")
    if food is not None and (not _is_int(food) or food < 0 or (side is not None and food > side * side)):
        most = f"{side * side:,} (grid_size squared)" if side is not None else "grid_size squared"
        problems.append(("food", f"must be an integer in [0, {most}], got {food!r}"))
    regrowth = params.get("regrowth", 0.05)
    if not _is_number(regrowth) or not 0.0 <= regrowth <= 1.0:
        problems.append(("regrowth", f"must be a number in [0, 1], got {regrowth!r}"))
    radius = params.get("view_radius", 2)
    if not _is_int(radius) or not 0 <= radius <= MAX_VIEW_RADIUS:
        problems.append(("view_radius", f"must be an integer in [0, {MAX_VIEW_RADIUS}], got {radius!r}"))
    elif agents is not None and agents * 3 * (2 * radius + 1) ** 2 * 4 > MAX_OBSERVATION_BYTES:
        problems.append(
            ("view_radius", f"{radius} with {agents:,} agents makes {agents * 3 * (2 * radius + 1) ** 2 * 4 / 2**30:.1f} GiB "
             f"of observations per step (at most {MAX_OBSERVATION_BYTES / 2**30:.0f} GiB); lower view_radius or agents")
        )  # fmt: skip
    step_cost = params.get("step_cost", 0.0)
    if not _is_number(step_cost):
        problems.append(("step_cost", f"must be a finite number, got {step_cost!r}"))
    cycles = params.get("max_cycles", 500)
    if not _is_int(cycles) or not 1 <= cycles <= 10_000_000:
        problems.append(("max_cycles", f"must be an integer in [1, 10,000,000], got {cycles!r}"))
    return problems


def default_grid_size(agents: int) -> int:
    """A square side giving about four cells per agent (at least 8)."""
    return max(8, math.ceil(math.sqrt(4 * agents)))


