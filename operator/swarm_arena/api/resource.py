"""The whole `SwarmEvaluation` object, and loading it from a manifest file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from swarm_arena.api.base import ApiModel
from swarm_arena.api.spec import DNS1123_LABEL, SwarmEvaluationSpec
from swarm_arena.api.status import SwarmEvaluationStatus

GROUP = "arena.swarm.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SwarmEvaluation"
PLURAL = "swarmevaluations"
SINGULAR = "swarmevaluation"
SHORT_NAMES = ["swe", "sweval"]


class ObjectMeta(ApiModel):
    """The part of metadata the arena reads; everything else is kept as given."""

    model_config = {**ApiModel.model_config, "extra": "allow"}

    name: str = Field(min_length=1, max_length=63, pattern=DNS1123_LABEL)
    namespace: str = Field(default="default", min_length=1, max_length=63, pattern=DNS1123_LABEL)


class SwarmEvaluation(ApiModel):
    api_version: Literal["arena.swarm.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["SwarmEvaluation"]
    metadata: ObjectMeta
    spec: SwarmEvaluationSpec
    status: SwarmEvaluationStatus | None = None

    @property
    def qualified_name(self) -> str:
        """`<namespace>/<name>`: the prefix of every named actor of this evaluation."""
        return f"{self.metadata.namespace}/{self.metadata.name}"


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The first SwarmEvaluation document in a YAML file, as a plain dict."""
    text = Path(path).read_text()
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == KIND:
            return doc
    raise ValueError(f"{path}: no document with kind: {KIND}")
