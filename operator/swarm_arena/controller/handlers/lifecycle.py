"""Operator start and stop: settings for kopf, the shared clients, metrics."""

from __future__ import annotations

import logging

import aiohttp
import kopf

from swarm_arena.controller.kube import Kube, load_client
from swarm_arena.controller.reconciler import Reconciler
from swarm_arena.controller.settings import OperatorSettings

FINALIZER = "arena.swarm.dev/finalizer"
_settings: OperatorSettings | None = None


def configure(settings: OperatorSettings) -> None:
    """Called by `swarm-arena operator` before kopf starts."""
    global _settings
    _settings = settings


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="arena.swarm.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="arena.swarm.dev", key="last-handled-configuration"
    )
    # Events are posted on purpose (phase changes, recoveries), not for every log line.
    settings.posting.level = logging.ERROR
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30
    # No runtime scanning of CRDs and namespaces: the resources are fixed and the namespaces are
    # named exactly, so the chart grants neither (scanning would retry 403s for ~1.5 min first).
    settings.scanning.disabled = True
    memo.kube = Kube(load_client())
    memo.session = aiohttp.ClientSession()
    memo.reconciler = Reconciler(_settings or OperatorSettings(), memo.kube, memo.session)
    memo.pokes = {}
    memo.memories = {}


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_) -> None:
    session = getattr(memo, "session", None)
    if session is not None:
        await session.close()
    kube = getattr(memo, "kube", None)
    if kube is not None:
        kube.close()
