"""Policies: the batched interface every contestant implements, and the built-in ones."""

from swarm_arena.arena.policies.base import BatchedPolicy, make_policy

__all__ = ["BatchedPolicy", "make_policy"]
