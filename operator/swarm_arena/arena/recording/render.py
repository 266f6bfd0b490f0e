"""`swarm-arena render RECORDING`: a recorded episode as a gif or an mp4.

The episode is re-stepped from its seed and recorded actions (as `replay` does), and each state
drawn: the built-in foraging world by a numpy renderer (food dim green, each agent's cell in its
policy's colour, one to eight pixels a cell, so 10,000 agents stay legible), any other PettingZoo
environment by its own `render_mode="rgb_array"`. Frames are written with imageio (the `render`
extra; mp4 through imageio-ffmpeg).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from swarm_arena.arena.recording.replay import RecordedEpisode, Recording

# Policy colours, in the episode's policy order (spec order for a shared team) (tab10, without its green: food is green).
PALETTE = np.array(
    [[31, 119, 180], [255, 127, 14], [214, 39, 40], [148, 103, 189], [140, 86, 75],
     [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]], dtype=np.uint8,
)  # fmt: skip
BACKGROUND = np.array([250, 250, 250], dtype=np.uint8)
FOOD = np.array([150, 220, 150], dtype=np.uint8)
NO_POLICY = np.array([60, 60, 60], dtype=np.uint8)
MAX_IMAGE_PX = 800


def imageio_module() -> Any:
    try:
        import imageio.v3 as iio
    except ImportError:
        raise ImportError("rendering writes video through imageio: `pip install 'swarm-arena[render]'`") from None
    return iio


def policy_colours(recorded: RecordedEpisode) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each agent's colour [N, 3], and the legend (policy -> colour)."""
    # The episode's policies in plan order (its returns map keeps it), then any other found.
    policies = list(dict.fromkeys([*recorded.policy_returns, *(p for p in recorded.policy_of_agent if p is not None)]))
    legend = {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(policies)}
    colours = np.array([legend[p] if p is not None else NO_POLICY for p in recorded.policy_of_agent], dtype=np.uint8)
    return colours.reshape(-1, 3), legend


def draw_foraging(grid_size: int, food: np.ndarray, pos: np.ndarray, alive: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """One frame of the foraging world: [H, W, 3] uint8, `cell` pixels a grid cell."""
    cell = max(1, min(8, MAX_IMAGE_PX // grid_size))
    image = np.empty((grid_size, grid_size, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    image.reshape(-1, 3)[food.reshape(-1)] = FOOD
    live = np.flatnonzero(alive)
    image[pos[live, 0], pos[live, 1]] = colours[live]
    return np.repeat(np.repeat(image, cell, axis=0), cell, axis=1)


def _foraging(env: Any) -> Any | None:
    from swarm_arena.arena.envs.foraging import ForagingEnv

    return env.env if isinstance(env.env, ForagingEnv) else None


def frames(recording: Recording, episode: int, every: int = 1) -> Iterator[np.ndarray]:
    """The episode's frames: the state after reset, then after every `every`-th step."""
    from swarm_arena.arena.array_env import ArrayEnv, make_array_env
    from swarm_arena.arena.registry import load_environment_factory

    recorded = recording.episode(episode)
    environment = recording.manifest["environment"]
    params, max_steps = dict(environment.get("params", {})), environment.get("maxSteps", 500)
    env = make_array_env(environment["factory"], params, max_steps)
    world = _foraging(env)
    if world is None:  # the environment draws itself
        env.close()
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame-based renderers, headless
        factory = load_environment_factory(environment["factory"])
        env = ArrayEnv(factory(**params, render_mode="rgb_array"), max_steps)
    colours, _ = policy_colours(recorded)

    def draw() -> np.ndarray:
        if world is not None:
            state = world.get_state()
            return draw_foraging(world.grid_size, state["food"], state["pos"], env.alive, colours)
        return np.asarray(env.env.render(), dtype=np.uint8)

    try:
        env.reset(recorded.seed)
        yield draw()
        for t in range(recorded.steps):
            env.step(recorded.actions[t])
            if (t + 1) % every == 0 or t + 1 == recorded.steps:
                yield draw()
    finally:
        env.close()


def render_episode(recording: Recording, episode: int, out: Path, fps: int = 10, every: int = 1) -> int:
    """Write `out` (.gif or .mp4) from the episode's frames; how many frames it holds."""
    iio = imageio_module()
    suffix = out.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"{out}: write a .gif or an .mp4")
    pictures = list(frames(recording, episode, every))
    if suffix == ".gif":
        iio.imwrite(out, pictures, extension=".gif", duration=1000 / fps, loop=0)
    else:
        even = [p[: p.shape[0] // 2 * 2, : p.shape[1] // 2 * 2] for p in pictures]  # yuv420p wants even sides
        iio.imwrite(out, even, extension=".mp4", fps=fps, codec="libx264", macro_block_size=1)
    return len(pictures)
