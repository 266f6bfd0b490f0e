"""Names and labels of everything the operator creates for an evaluation (pure)."""

from __future__ import annotations

import hashlib
import hmac

from swarm_arena.api.resource import API_VERSION, KIND

FIELD_MANAGER = "swarm-arena-operator"
LABEL_EVALUATION = "arena.swarm.dev/evaluation"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "swarm-arena-operator"
ANNOTATION_SPEC_HASH = "arena.swarm.dev/spec-hash"

# Kubernetes names are at most 63 characters where they end up in labels and Service names.
_MAX = 63


def _fit(base: str, suffix: str) -> str:
    return f"{base[: _MAX - len(suffix)].rstrip('-')}{suffix}"


def ray_cluster_name(evaluation: str) -> str:
    """The RayCluster of an evaluation carries its name (`kubectl get raycluster NAME`)."""
    return evaluation


def results_configmap_name(evaluation: str) -> str:
    return _fit(evaluation, "-results")


def auth_secret_name(evaluation: str, uid: str) -> str:
    """The token Secret carries the evaluation's uid: an earlier evaluation of the same name (its
    Secret still waiting for the garbage collector) never holds this name, so a create that
    answers 409 found this evaluation's own Secret, and the operator never has to read Secrets to
    tell (it has no `get` on them)."""
    return _fit(evaluation, f"-ray-auth-{uid[:8]}")


def head_service_name(cluster: str) -> str:
    """KubeRay's head Service (`<cluster>-head-svc`)."""
    return f"{cluster}-head-svc"


def submission_id(uid: str, attempt: int) -> str:
    """Deterministic per evaluation incarnation and attempt: re-submitting it is a no-op for Ray."""
    return f"swe-{uid.replace('-', '')[:12]}-{attempt}"


def ray_auth_token(key: bytes, namespace: str, name: str, uid: str) -> str:
    """The Ray token of one evaluation's cluster, derived from the operator's key.

    Derived, not stored: the operator writes the Secret KubeRay mounts into the Ray pods but never
    reads Secrets back; after a restart it derives the same token again.
    """
    return hmac.new(key, f"{namespace}/{name}/{uid}".encode(), hashlib.sha256).hexdigest()


def labels(evaluation: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "swarm-arena",
        "app.kubernetes.io/instance": evaluation,
        "app.kubernetes.io/component": component,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_EVALUATION: evaluation,
    }


def owner_reference(name: str, uid: str) -> dict[str, object]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
