"""`spec.cluster.pods`: what real clusters need on every Ray pod the operator's RayCluster makes.

The defaults pass the `restricted` Pod Security Standard (non-root as the Ray image's uid 1000,
RuntimeDefault seccomp, no privilege escalation, every capability dropped), so a namespace
labelled `pod-security.kubernetes.io/enforce: restricted` admits the Ray pods as they are.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from swarm_arena.api.base import ApiModel

DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# The uid of the `ray` user in the official Ray images (and images/ray.Dockerfile).
RAY_IMAGE_UID = 1000


class SeccompProfile(ApiModel):
    """The seccomp profile of the Ray containers (core/v1 SeccompProfile)."""

    type: Literal["RuntimeDefault", "Localhost", "Unconfined"] = Field(
        default="RuntimeDefault",
        description="`RuntimeDefault` (what `restricted` asks for), `Localhost` (with localhostProfile) or `Unconfined`.",
    )
    localhost_profile: str | None = Field(
        default=None, max_length=256, description="Profile file on the node, for type `Localhost`."
    )


class RayPodSecurity(ApiModel):
    """Security settings of the Ray pods and their containers; the defaults pass `restricted`."""

    run_as_non_root: bool = Field(default=True, description="Refuse to start a container whose user is root.")
    run_as_user: int | None = Field(
        default=RAY_IMAGE_UID, ge=0, le=2_147_483_647,
        description=f"uid the Ray containers run as (default {RAY_IMAGE_UID}, the Ray image's `ray` user).",
    )
    run_as_group: int | None = Field(default=None, ge=0, le=2_147_483_647, description="gid the Ray containers run as.")
    fs_group: int | None = Field(default=None, ge=0, le=2_147_483_647, description="Group that owns mounted volumes.")
    seccomp_profile: SeccompProfile = Field(default_factory=SeccompProfile, description="Seccomp profile.")
    allow_privilege_escalation: bool = Field(
        default=False, description="Whether a process may gain more privileges than its parent (`restricted`: false)."
    )
    read_only_root_filesystem: bool = Field(
        default=False, description="Mount the container's root filesystem read-only (Ray writes /tmp/ray: mount one)."
    )

    def pod_wire(self) -> dict:
        """The pod-level `securityContext`."""
        out: dict = {"runAsNonRoot": self.run_as_non_root, "seccompProfile": self.seccomp_profile.to_wire()}
        for key, value in (("runAsUser", self.run_as_user), ("runAsGroup", self.run_as_group),
                           ("fsGroup", self.fs_group)):
            if value is not None:
                out[key] = value
        return out

    def container_wire(self) -> dict:
        """The container-level `securityContext` (capabilities are always dropped: Ray needs none)."""
        return {
            "allowPrivilegeEscalation": self.allow_privilege_escalation,
            "readOnlyRootFilesystem": self.read_only_root_filesystem,
            "capabilities": {"drop": ["ALL"]},
        }


class LocalObjectReference(ApiModel):
    """A Secret in the evaluation's namespace, by name."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN, description="Secret name.")


class RayPodsSpec(ApiModel):
    """Settings every Ray pod (head and workers) of the RayCluster gets."""

    service_account_name: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN,
        description="ServiceAccount of the Ray pods (default: the namespace's `default`). It must exist.",
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, max_length=16,
        description="Secrets for pulling the Ray image, added to the operator's own default ones (`rayPods.imagePullSecrets` in the chart).",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, max_length=64,
        description="Extra labels of the Ray pods (the operator's own `app.kubernetes.io/*` and `arena.swarm.dev/*` labels win).",
    )
    annotations: dict[str, str] = Field(default_factory=dict, max_length=64, description="Extra annotations of the Ray pods.")
    security_context: RayPodSecurity = Field(
        default_factory=RayPodSecurity, description="Pod and container security settings; the defaults pass `restricted`."
    )
    priority_class_name: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN,
        description="PriorityClass of the Ray pods.",
    )
