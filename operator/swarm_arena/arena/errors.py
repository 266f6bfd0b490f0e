"""How a run ends badly, as types: the job tells the operator which kind it was.

`InvalidSpec` means the evaluation cannot run as written (a factory that does not resolve,
params the environment or a policy refuses, teams that do not fit): retrying is pointless, the
operator ends the evaluation `Failed/InvalidSpec`. Any other `EvaluationFailed` is a run that
broke (restarts exhausted, a policy raised mid-episode, the cluster lacks resources), which a
re-submission may get past.
"""

from __future__ import annotations


class EvaluationFailed(RuntimeError):
    """The run cannot go on; the message says why and which field to change."""


class InvalidSpec(EvaluationFailed):
    """The spec cannot run as written; the message starts with the field path (`spec.environment.factory: ...`)."""


class EvaluationNotRunning(LookupError):
    """No coordinator of that evaluation on the cluster: it finished, has not started, or runs elsewhere."""


class RepairTimedOut(TimeoutError):
    """The coordinator did not answer a repair request in time (it may still be repairing)."""
