"""Which existing Ray clusters (`spec.cluster.address`) an evaluation may use, and with which token.

An evaluation's author writes `cluster.address`; the operator holds the Ray tokens. Sending a
token to whatever address an author wrote would hand it to anyone who can create an evaluation,
so an admin-owned file (`--cluster-addresses-file`, the chart's `existingClusters` value) lists
the approved clusters:

    clusters:
      - address: http://ray-head.team-a.svc:8265
        namespaces: [team-a, team-b]      # or ["*"]: every namespace the operator serves
        tokenFile: team-a-ray             # a file in --ray-tokens-dir; omit for a cluster without auth

An address is matched on its exact scheme, host and port (the port its scheme implies when it
names none); there is no fallback token. An evaluation whose address is not approved for its
namespace is refused before any request is made (`AddressNotAllowed`); one whose approved entry
names a token file that is missing or empty is refused too (`TokenMissing`), since a request
without its token would only be turned away (or, worse, reach a cluster without auth).

The file is read again when it changes (a mounted ConfigMap is updated in place), so an admin's
approval takes effect without restarting the operator.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

log = logging.getLogger(__name__)

ADDRESS_NOT_ALLOWED = "AddressNotAllowed"
TOKEN_MISSING = "TokenMissing"
ANY_NAMESPACE = "*"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class AddressesFileError(ValueError):
    """The admin's addresses file is malformed (the message names the entry and field)."""


def endpoint(address: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a dashboard address; ValueError when it is not an http(s) URL."""
    parts = urlsplit(address.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{address!r} is not an http:// or https:// URL with a host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{address!r} has an invalid port") from None
    return scheme, parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS[scheme]


@dataclass(frozen=True)
class ApprovedCluster:
    address: str
    endpoint: tuple[str, str, int]
    namespaces: frozenset[str]
    token_file: str | None

    def allows(self, namespace: str) -> bool:
        return ANY_NAMESPACE in self.namespaces or namespace in self.namespaces


@dataclass(frozen=True)
class Access:
    """What the operator may do with an evaluation's `cluster.address`."""

    token: str | None = None
    refused: str | None = None
    """None when allowed; else the condition reason (ADDRESS_NOT_ALLOWED or TOKEN_MISSING)."""
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.refused is None


def parse(text: str, source: str = "the cluster addresses file") -> list[ApprovedCluster]:
    """The approved clusters in the YAML `text`; AddressesFileError naming the entry and field."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise AddressesFileError(f"{source}: not YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("clusters", []), list):
        raise AddressesFileError(f"{source}: expected a mapping with a list `clusters`")
    unknown = set(doc) - {"clusters"}
    if unknown:
        raise AddressesFileError(f"{source}: unknown key(s) {sorted(unknown)}; only `clusters`")
    clusters: list[ApprovedCluster] = []
    for i, entry in enumerate(doc.get("clusters") or []):
        where = f"{source}: clusters[{i}]"
        if not isinstance(entry, dict):
            raise AddressesFileError(f"{where}: expected a mapping")
        extra = set(entry) - {"address", "namespaces", "tokenFile"}
        if extra:
            raise AddressesFileError(f"{where}: unknown field(s) {sorted(extra)}")
        address = entry.get("address")
        if not isinstance(address, str):
            raise AddressesFileError(f"{where}.address: required, a URL such as http://ray-head.team-a.svc:8265")
        try:
            ep = endpoint(address)
        except ValueError as exc:
            raise AddressesFileError(f"{where}.address: {exc}") from None
        namespaces = entry.get("namespaces")
        if not isinstance(namespaces, list) or not namespaces or not all(isinstance(n, str) and n for n in namespaces):
            raise AddressesFileError(f"{where}.namespaces: required, a non-empty list of namespaces (or [\"*\"])")
        token_file = entry.get("tokenFile")
        if token_file is not None and (not isinstance(token_file, str) or not token_file
                                       or "/" in token_file or token_file.startswith(".")):
            raise AddressesFileError(f"{where}.tokenFile: the name of a file in --ray-tokens-dir (no path)")
        clusters.append(ApprovedCluster(address, ep, frozenset(namespaces), token_file))
    return clusters


class AddressBook:
    """The admin's approved clusters, re-read when the file changes, and the tokens they name."""

    def __init__(self, path: Path | None, tokens_dir: Path | None) -> None:
        self.path, self.tokens_dir = path, tokens_dir
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._clusters: list[ApprovedCluster] = []
        self._error: str | None = None
        if path is not None:
            self._load()
            if self._error:
                raise AddressesFileError(self._error)

    def _load(self) -> None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self._stamp, self._clusters, self._error = None, [], f"{self.path}: {exc.strerror}"
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            self._clusters, self._error = parse(self.path.read_text(), str(self.path)), None
        except (OSError, AddressesFileError) as exc:
            # Keep nothing approved rather than an older list: a broken file approves no address.
            self._clusters, self._error = [], str(exc)
            log.error("cluster addresses file: %s; no existing cluster is approved until it is fixed", exc)
        self._stamp = stamp

    def access(self, namespace: str, address: str) -> Access:
        """May an evaluation in `namespace` use `address`, and with which token."""
        with self._lock:
            if self.path is not None:
                self._load()
            clusters, error = list(self._clusters), self._error
        try:
            ep = endpoint(address)
        except ValueError as exc:
            return Access(refused=ADDRESS_NOT_ALLOWED, message=f"spec.cluster.address: {exc}")
        if self.path is None:
            return Access(refused=ADDRESS_NOT_ALLOWED, message=(
                f"spec.cluster.address {address} is not approved: this operator approves no existing clusters "
                "(an admin lists them in --cluster-addresses-file, the chart's `existingClusters` value)"))
        if error:
            return Access(refused=ADDRESS_NOT_ALLOWED, message=(
                f"spec.cluster.address {address} is not approved: the operator's cluster addresses file is "
                f"invalid ({error}); an admin must fix it"))
        match = next((c for c in clusters if c.endpoint == ep and c.allows(namespace)), None)
        if match is None:
            return Access(refused=ADDRESS_NOT_ALLOWED, message=(
                f"spec.cluster.address {address} is not approved for namespace {namespace}: an admin lists the "
                "existing Ray clusters each namespace may use (the chart's `existingClusters` value); the address "
                "must match one there exactly (scheme, host and port)"))
        if match.token_file is None:
            return Access()
        token = self._read_token(match.token_file)
        if not token:
            return Access(refused=TOKEN_MISSING, message=(
                f"the token for spec.cluster.address {address} (file {match.token_file} in the operator's Ray tokens "
                "directory) is missing or empty; an admin must provide it (the chart's `rayTokens.existingSecret`)"))
        return Access(token=token)

    def _read_token(self, name: str) -> str | None:
        if self.tokens_dir is None:
            return None
        try:
            return (self.tokens_dir / name).read_text().strip() or None
        except OSError:
            return None
