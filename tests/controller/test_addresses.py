"""The admin's approved existing clusters (controller/addresses.py): exact matching, no fallback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarm_arena.api.status import Phase, SwarmEvaluationStatus
from swarm_arena.controller import conditions as cond
from swarm_arena.controller.addresses import (
    ADDRESS_NOT_ALLOWED, TOKEN_MISSING, AddressBook, AddressesFileError, endpoint, parse,
)
from swarm_arena.controller.decide import Observation, decide
from tests.controller.test_decide import NOW, SPEC, UID

FILE = """
clusters:
  - address: http://ray-head.team-a.svc:8265
    namespaces: [team-a]
    tokenFile: team-a
  - address: https://shared.example.com
    namespaces: ["*"]
"""


@pytest.fixture
def book(tmp_path: Path) -> AddressBook:
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "team-a").write_text("secret-a\n")
    (tokens / "default").write_text("admin-token")  # a file named `default` is never a fallback
    (tmp_path / "clusters.yaml").write_text(FILE)
    return AddressBook(tmp_path / "clusters.yaml", tokens)


def test_endpoint_is_scheme_host_and_the_port_the_scheme_implies() -> None:
    assert endpoint("http://Ray-Head:8265/") == ("http", "ray-head", 8265)
    assert endpoint("https://h") == ("https", "h", 443)
    assert endpoint("http://h") == ("http", "h", 80)
    for bad in ("ray://h:10001", "h:8265", "http://:80", "http://h:99999"):
        with pytest.raises(ValueError):
            endpoint(bad)


def test_the_approved_address_in_its_namespace_gets_its_token(book: AddressBook) -> None:
    access = book.access("team-a", "http://ray-head.team-a.svc:8265")
    assert access.allowed and access.token == "secret-a"
    shared = book.access("anyone", "https://shared.example.com:443/")
    assert shared.allowed and shared.token is None


@pytest.mark.parametrize("namespace,address", [
    ("team-b", "http://ray-head.team-a.svc:8265"),  # another namespace
    ("team-a", "https://ray-head.team-a.svc:8265"),  # another scheme
    ("team-a", "http://ray-head.team-a.svc:8266"),  # another port
    ("team-a", "http://ray-head.team-a.svc"),  # port 80, not 8265
    ("team-a", "http://ray-head.team-a.svc.evil.com:8265"),  # another host
    ("team-a", "http://attacker:8265"),
])
def test_anything_else_is_refused_and_no_token_leaves(book: AddressBook, namespace: str, address: str) -> None:
    access = book.access(namespace, address)
    assert not access.allowed and access.refused == ADDRESS_NOT_ALLOWED and access.token is None
    assert address in access.message and namespace in access.message


def test_without_a_file_every_address_is_refused(tmp_path: Path) -> None:
    (tmp_path / "default").write_text("admin-token")
    access = AddressBook(None, tmp_path).access("team-a", "http://ray-head:8265")
    assert access.refused == ADDRESS_NOT_ALLOWED and "--cluster-addresses-file" in access.message


def test_a_missing_token_file_is_refused_not_sent_without_it(book: AddressBook) -> None:
    assert book.tokens_dir is not None
    (book.tokens_dir / "team-a").unlink()
    access = book.access("team-a", "http://ray-head.team-a.svc:8265")
    assert access.refused == TOKEN_MISSING and access.token is None and "team-a" in access.message


def test_the_file_is_read_again_when_it_changes_and_a_broken_one_approves_nothing(book: AddressBook) -> None:
    assert book.path is not None
    assert not book.access("team-b", "http://ray-head.team-a.svc:8265").allowed
    book.path.write_text(FILE.replace("[team-a]", "[team-a, team-b]"))
    os.utime(book.path, ns=(1, 1))  # a new stamp even within the file system's time resolution
    assert book.access("team-b", "http://ray-head.team-a.svc:8265").token == "secret-a"
    book.path.write_text("clusters: [{address: nope}]")
    access = book.access("team-a", "http://ray-head.team-a.svc:8265")
    assert access.refused == ADDRESS_NOT_ALLOWED and "clusters[0].address" in access.message


@pytest.mark.parametrize("text,field", [
    ("clusters: [{namespaces: [a]}]", "clusters[0].address"),
    ("clusters: [{address: 'http://h:1'}]", "clusters[0].namespaces"),
    ("clusters: [{address: 'http://h:1', namespaces: []}]", "clusters[0].namespaces"),
    ("clusters: [{address: 'http://h:1', namespaces: [a], tokenFile: ../etc/passwd}]", "clusters[0].tokenFile"),
    ("clusters: [{address: 'http://h:1', namespaces: [a], token: x}]", "clusters[0]: unknown field"),
    ("cluster: []", "unknown key"),
])
def test_a_malformed_file_names_the_entry_and_field(text: str, field: str) -> None:
    with pytest.raises(AddressesFileError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse(text)


def test_an_operator_given_a_broken_file_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("clusters: [{address: 'ftp://h', namespaces: [a]}]")
    with pytest.raises(AddressesFileError, match="clusters\\[0\\].address"):
        AddressBook(tmp_path / "c.yaml", None)


def test_a_refused_address_waits_pending_with_the_reason_and_no_action() -> None:
    o = Observation(now=NOW, uid=UID, generation=2, spec=SPEC, status=SwarmEvaluationStatus(), cluster=None,
                    dashboard_reachable=False, address_refused=(ADDRESS_NOT_ALLOWED, "not approved"))
    d = decide(o)
    assert d.actions == [] and d.status.phase is Phase.PENDING and d.requeue_s is not None
    c = cond.get(d.status.conditions, cond.CLUSTER_READY)
    assert c is not None and (c.status, c.reason, c.message) == ("False", ADDRESS_NOT_ALLOWED, "not approved")
    assert d.event is not None and d.event[1] == "Pending"
