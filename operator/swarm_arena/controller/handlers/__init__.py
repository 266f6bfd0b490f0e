"""kopf registrations, one module per concern. Importing this package registers them all."""

from swarm_arena.controller.handlers import evaluations, lifecycle, pods, rayclusters  # noqa: F401
