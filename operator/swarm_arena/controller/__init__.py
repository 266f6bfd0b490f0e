"""The kopf operator: SwarmEvaluation -> RayCluster -> the arena job -> results in status.

Layers, top to bottom (a layer never imports one above it):

- `handlers/`: kopf registrations, thin, one module per concern;
- `reconciler`: one evaluation's loop: observe (indexes, the dashboard), decide, act;
- pure: `names`, `build_*` (children as plain dicts), `decide` (the lifecycle state machine and
  the status it writes), `conditions`;
- clients: `kube` (Kubernetes through a thread pool), `dashboard` (Ray's jobs and logs REST API);
- under them `swarm_arena.api` and the pure plan code of the arena. Never the Ray runtime, never
  users' factories, never an in-process Ray connection.
"""
