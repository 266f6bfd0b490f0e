"""Names of the long-lived Ray actors of one evaluation.

Every actor is named under the evaluation (`<namespace>/<evaluation>/...`) in one Ray namespace,
so any process connected to the cluster (a test, the operator's repair path, a second driver)
finds the same actor again with `ray.get_actor(name, namespace=RAY_NAMESPACE)`, and a name
survives the actor being re-created elsewhere after its node is lost.
"""

from __future__ import annotations

RAY_NAMESPACE = "swarm-arena"


def coordinator_name(evaluation: str) -> str:
    """The coordinator of `evaluation` (`<namespace>/<name>`)."""
    return f"{evaluation}/coordinator"


def env_name(evaluation: str, slot: int) -> str:
    """Environment actor `slot` (0..parallelEpisodes-1)."""
    return f"{evaluation}/env-{slot}"


def shard_name(evaluation: str, policy: str, index: int) -> str:
    """Policy shard actor `index` of `policy`.

    With `parallelEpisodes` P and k shards per policy, environment slot j owns the indices
    j*k .. j*k+k-1, so two episodes never share a policy instance (and its RNG).
    """
    return f"{evaluation}/shard-{policy}-{index}"


def evaluation_prefix(evaluation: str) -> str:
    """What every actor name of `evaluation` starts with."""
    return f"{evaluation}/"
