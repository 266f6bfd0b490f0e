"""Joining an existing Ray cluster, failing fast and clearly when nothing is there.

`ray.init(address="host:port")` keeps retrying an address where nothing listens for minutes,
which a user with a typo (or the operator's repair path) cannot tell from a slow cluster. A
plain TCP connect answers in milliseconds, so it goes first.
"""

from __future__ import annotations

import logging
import re
import socket

from swarm_arena.arena.naming import RAY_NAMESPACE

# `host:port` (a GCS address) or `ray://host:port` (Ray Client); `auto` is resolved by Ray itself.
_HOST_PORT = re.compile(r"^(?:ray://)?(?P<host>\[[^\]]+\]|[^:/\s]+):(?P<port>[0-9]{1,5})/?$")
PROBE_TIMEOUT_S = 5.0


def check_reachable(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise ConnectionError when `address` names a host:port where nothing accepts a connection."""
    match = _HOST_PORT.match(address.strip())
    if not match:
        return
    host, port = match["host"].strip("[]"), int(match["port"])
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc.strerror or exc})") from None


def join_cluster(address: str, **init_kwargs) -> None:
    """`ray.init` against an existing cluster in the arena's namespace, after a fast reachability check.

    Raises ConnectionError saying where it looked and what to do when there is no cluster there.
    """
    import ray

    try:
        check_reachable(address)
        ray.init(address=address, namespace=RAY_NAMESPACE, **{"logging_level": logging.WARNING, **init_kwargs})
    except ConnectionError as exc:
        raise ConnectionError(
            f"cannot reach a Ray cluster at {address!r} ({exc}); start one (`ray start --head`) or pass its address"
        ) from None
