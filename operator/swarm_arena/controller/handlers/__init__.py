"""kopf registrations, one module per concern. Importing this package registers them all.

Every handler is a coroutine, even the trivial ones (indexes, pokes): kopf runs a plain function in
a thread of its executor, and at 1,000 evaluations that hop, for each watch event of their pods
and RayClusters, cost about a tenth of the operator's CPU. Nothing in them blocks.
"""

from swarm_arena.controller.handlers import evaluations, lifecycle, pods, rayclusters  # noqa: F401
