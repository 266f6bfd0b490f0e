"""Kubernetes quantities: one pattern (the API's), read by `kubernetes.utils.parse_quantity`."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from swarm_arena.api.spec import QUANTITY_PATTERN, PolicyResources
from swarm_arena.arena.shard import actor_resources, bundle, quantity_bytes


@pytest.mark.parametrize(
    "text,expected",
    [
        ("512Mi", 512 * 2**20),
        (".5Gi", 2**29),
        ("1.5G", 1_500_000_000),
        ("2Gi", 2 * 2**30),
        ("1e9", 10**9),
        ("1E3", 1000),
        ("5.", 5),
        ("128974848", 128974848),
        ("129M", 129_000_000),
        ("100m", 1),  # Kubernetes rounds memory up to whole bytes: never 0
        ("1500m", 2),
        ("0", 0),
    ],
)
def test_quantity_bytes(text: str, expected: int) -> None:
    assert re.match(QUANTITY_PATTERN, text), text
    assert quantity_bytes(text) == expected


@pytest.mark.parametrize("text", ["1Gb", "1ki", "-1Gi", ".", "e9", "Gi", "1 Gi", "nan", "inf"])
def test_the_api_pattern_and_the_parser_refuse_the_same(text: str) -> None:
    assert not re.match(QUANTITY_PATTERN, text)
    with pytest.raises(ValidationError, match="memory"):
        PolicyResources(memory=text)
    with pytest.raises(ValueError, match="Kubernetes quantity"):
        quantity_bytes(text)


def test_a_fractional_quantity_reaches_ray_as_bytes() -> None:
    resources = PolicyResources(cpu=1, memory=".5Gi")
    assert actor_resources(resources) == {"num_cpus": 1, "num_gpus": 0.0, "memory": 2**29}
    assert bundle(resources) == {"CPU": 1, "memory": float(2**29)}
