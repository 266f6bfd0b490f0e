"""The fast reachability check in front of joining an existing Ray cluster."""

from __future__ import annotations

import socket

import pytest

from swarm_arena.arena.connection import check_reachable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("template", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}", "localhost:{port}"])
def test_nothing_listening_is_refused_at_once(template: str) -> None:
    with pytest.raises(ConnectionError, match=r"nothing answers at .*:\d+"):
        check_reachable(template.format(port=_closed_port()), timeout=2)


def test_a_listening_port_passes() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}")


@pytest.mark.parametrize("address", ["auto", "local", "http://127.0.0.1:8265"])
def test_addresses_ray_resolves_itself_are_left_to_it(address: str) -> None:
    check_reachable(address)
