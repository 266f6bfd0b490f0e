"""A small numpy MLP policy: real compute per agent, for benchmarks and as a template.

Weights are drawn from the seed (a stand-in for a trained network): observations (flattened,
float32) -> `hidden` tanh layers -> one logit per action -> the greedy action (Discrete) or the
tanh output scaled into the bounds (Box). The cost per agent grows with the observation size and
`hidden`, which is the point: it is what `policies[].resources` and `execution.parallelEpisodes`
are there to spread over cores (docs/performance.md).

    policies:
      - name: mlp
        factory: swarm_arena.arena.policies.mlp:MlpPolicy
        params: {hidden: [64, 64]}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces


class MlpPolicy:
    """Seeded random weights, batched forward pass; stateless between steps."""

    def __init__(
        self,
        observation_space: gymnasium.Space,
        action_space: gymnasium.Space,
        seed: int = 0,
        hidden: Sequence[int] = (64, 64),
        weights_seed: int = 0,
    ) -> None:
        if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
            raise ValueError(f"the mlp policy supports Discrete and Box action spaces, not {action_space}")
        if not observation_space.shape:
            raise ValueError(f"the mlp policy needs array observations, got {observation_space}")
        if not hidden or any(not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"policies[].params.hidden must be a list of positive layer sizes, got {hidden!r}")
        self.action_space = action_space
        inputs = int(np.prod(observation_space.shape))
        outputs = int(action_space.n) if isinstance(action_space, spaces.Discrete) else int(np.prod(action_space.shape))
        # The weights do not depend on the episode seed: one network, as a trained one would be.
        rng = np.random.default_rng(weights_seed)
        sizes = [inputs, *hidden, outputs]
        self._layers = [
            (rng.normal(0.0, 1.0 / np.sqrt(a), size=(a, b)).astype(np.float32), np.zeros(b, np.float32))
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        ]

    def act(self, observations: np.ndarray, agent_ids: Sequence[str]) -> np.ndarray:
        x = np.asarray(observations, dtype=np.float32).reshape(len(observations), -1)
        for weights, bias in self._layers[:-1]:
            x = np.tanh(x @ weights + bias)
        weights, bias = self._layers[-1]
        out = x @ weights + bias
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            return (np.argmax(out, axis=1) + space.start).astype(np.int64)
        low, high = space.low.reshape(-1), space.high.reshape(-1)
        scaled = np.where(np.isfinite(low) & np.isfinite(high), low + (np.tanh(out) + 1) * 0.5 * (high - low), out)
        return scaled.reshape(len(observations), *space.shape).astype(space.dtype)

    def reset(self, seed: int) -> None:
        return None  # deterministic: the episode seed changes nothing

    def get_state(self) -> dict[str, Any] | None:
        return None  # nothing changes between steps

    def set_state(self, state: Any) -> None:
        return None
