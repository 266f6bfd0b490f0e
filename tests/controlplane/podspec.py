"""What a kubelet derives from a Pod object, as pure functions (no processes, no network).

Used by the process node agent (``nodeagent.py``): container environment (``env``, ``envFrom``,
``fieldRef``, ``resourceFieldRef``, ``secretKeyRef``, ``configMapKeyRef``, ``$(VAR)`` expansion),
the files of ``configMap``/``secret``/``downwardAPI``/``projected`` volumes, the pod's hosts
file (cluster DNS for Services) and probe descriptions. Pods are plain dicts as the API server
returns them (camelCase keys), so this module needs no Kubernetes API server (quantities are
read with the client library's `parse_quantity`).
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Mapping, Sequence

from kubernetes.utils.quantity import parse_quantity as _parse_quantity

CLUSTER_DOMAIN = "cluster.local"


class PodConfigError(ValueError):
    """The pod cannot be started as written (a kubelet reports CreateContainerConfigError)."""


# --------------------------------------------------------------------------------------------
# quantities

def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes resource quantity ("500m", "2Gi", "1e3", 4) as a Decimal."""
    try:
        return _parse_quantity(value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise PodConfigError(f"invalid resource quantity {value!r}") from None


# --------------------------------------------------------------------------------------------
# $(VAR) expansion (k8s.io/kubernetes/third_party/forked/golang/expansion)


def expand(text: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` -> value if VAR is defined, else left as written; ``$$`` -> ``$``."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2:end]
                    out.append(env[name] if name in env else text[i:end + 1])
                    i = end + 1
                    continue
        out.append(c)
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------
# field and resource references


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """The value of a downward-API ``fieldRef.fieldPath`` for ``pod``."""
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"), "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"), "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(a["ip"] for a in status.get("hostIPs") or []),
        "status.podIPs": ",".join(a["ip"] for a in status.get("podIPs") or []),
    }
    if path in simple:
        return "" if simple[path] is None else str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise PodConfigError(f"unsupported fieldRef.fieldPath {path!r}")


def _container(pod: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    spec = pod.get("spec", {})
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if c.get("name") == name:
            return c
    raise PodConfigError(f"resourceFieldRef names container {name!r}, which the pod does not have")


def resource_value(pod: Mapping[str, Any], container: str, ref: Mapping[str, Any],
                   allocatable: Mapping[str, Any]) -> str:
    """The value of a ``resourceFieldRef``: the container's limit (or, as a kubelet does, the
    node's allocatable when no limit is set) or request, divided by ``divisor``, rounded up."""
    c = _container(pod, ref.get("containerName") or container)
    resource = ref["resource"]
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise PodConfigError(f"unsupported resourceFieldRef.resource {resource!r}")
    res = c.get("resources") or {}
    raw = (res.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (res.get("limits") or {}).get(name)  # a request defaults to the limit
    if raw is None:
        raw = allocatable.get(name, 0) if kind == "limits" else 0
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor <= 0:
        raise PodConfigError(f"resourceFieldRef.divisor must be positive, got {ref.get('divisor')!r}")
    return str(math.ceil(parse_quantity(raw) / divisor))


# --------------------------------------------------------------------------------------------
# environment


Lookup = Callable[[str, str], "Mapping[str, str] | None"]  # (namespace, name) -> decoded data or None


@dataclass
class Sources:
    """Where a kubelet reads referenced objects from (the agent passes API lookups)."""

    secret: Lookup
    config_map: Lookup
    allocatable: Mapping[str, Any] = field(default_factory=dict)


def _lookup(kind: str, get: Lookup, ns: str, ref: Mapping[str, Any], what: str) -> Mapping[str, str] | None:
    data = get(ns, ref["name"])
    if data is None and not ref.get("optional"):
        raise PodConfigError(f'{kind} "{ref["name"]}" not found (referenced by {what})')
    return data


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any], sources: Sources,
                  base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a kubelet gives ``container``: ``base`` (service variables and the like),
    then ``envFrom`` in order, then ``env`` in order, each value ``$(VAR)``-expanded against what
    came before."""
    ns = pod["metadata"]["namespace"]
    cname = container["name"]
    env: dict[str, str] = dict(base or {})
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            data = _lookup("configmap", sources.config_map, ns, src["configMapRef"], f"envFrom of {cname}")
        elif "secretRef" in src:
            data = _lookup("secret", sources.secret, ns, src["secretRef"], f"envFrom of {cname}")
        else:
            raise PodConfigError(f"container {cname}: unsupported envFrom source {sorted(src)}")
        for k, v in (data or {}).items():
            env[prefix + k] = v
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        vf = var["valueFrom"]
        what = f"env {name} of container {cname}"
        if "fieldRef" in vf:
            env[name] = field_value(pod, vf["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in vf:
            env[name] = resource_value(pod, cname, vf["resourceFieldRef"], sources.allocatable)
        elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
            kind = "secret" if "secretKeyRef" in vf else "configmap"
            ref = vf["secretKeyRef"] if kind == "secret" else vf["configMapKeyRef"]
            data = _lookup(kind, sources.secret if kind == "secret" else sources.config_map, ns, ref, what)
            if data is None:
                continue
            if ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise PodConfigError(f'{kind} "{ref["name"]}" has no key "{ref["key"]}" (referenced by {what})')
            env[name] = data[ref["key"]]
        else:
            raise PodConfigError(f"{what}: unsupported valueFrom {sorted(vf)}")
    return env


def command_line(container: Mapping[str, Any], env: Mapping[str, str],
                 entrypoint: Sequence[str] | None = None, cmd: Sequence[str] | None = None) -> list[str]:
    """The container's argv as a container runtime makes it, ``$(VAR)`` expanded in ``command`` and
    ``args``: ``command`` replaces the image's ENTRYPOINT (and drops its CMD), ``args`` replace its
    CMD. ``entrypoint``/``cmd`` None: the image is not used (host fallback), so the container must
    say what to run."""
    command = [expand(a, env) for a in (container.get("command") or [])]
    args = [expand(a, env) for a in (container.get("args") or [])]
    if entrypoint is None and cmd is None:
        argv = command + args
        if not argv:
            raise PodConfigError(
                f"container {container['name']}: no command/args; its image is not in the local store, so the "
                "process node agent runs the host's environment in its place and does not know the image's "
                "entrypoint: give the container a command, or build the image (make images)")
        return argv
    if command:
        argv = command + args
    else:
        argv = list(entrypoint or ()) + (args or list(cmd or ()))
    if not argv:
        raise PodConfigError(f"container {container['name']}: neither the pod nor the image says what to run "
                             "(no command/args, no ENTRYPOINT/CMD)")
    return argv


def decode_secret(data: Mapping[str, str] | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in (data or {}).items()}


# --------------------------------------------------------------------------------------------
# volumes


TokenSource = Callable[[str, str, "list[str] | None", int], str]  # (namespace, sa, audiences, seconds) -> token


@dataclass
class VolumeFiles:
    """A volume's content as files (relative path -> text), or a directory kind."""

    name: str
    kind: str  # "files" | "emptyDir" | "hostPath"
    files: dict[str, str] = field(default_factory=dict)
    host_path: str = ""
    medium: str = ""
    size_limit: str = ""


def _items(data: Mapping[str, str], items: list | None, what: str, optional: bool) -> dict[str, str]:
    if not items:
        return dict(data)
    out = {}
    for it in items:
        if it["key"] not in data:
            if optional:
                continue
            raise PodConfigError(f'{what} has no key "{it["key"]}"')
        out[it.get("path") or it["key"]] = data[it["key"]]
    return out


def volume_files(pod: Mapping[str, Any], volume: Mapping[str, Any], sources: Sources,
                 token: TokenSource) -> VolumeFiles:
    """What a kubelet puts into ``volume`` (one of ``pod.spec.volumes``)."""
    ns = pod["metadata"]["namespace"]
    name = volume["name"]
    sa = pod.get("spec", {}).get("serviceAccountName") or "default"
    if "emptyDir" in volume:
        ed = volume["emptyDir"] or {}
        return VolumeFiles(name, "emptyDir", medium=ed.get("medium", ""), size_limit=ed.get("sizeLimit", ""))
    if "hostPath" in volume:
        return VolumeFiles(name, "hostPath", host_path=volume["hostPath"]["path"])

    def config_map(src: Mapping[str, Any]) -> dict[str, str]:
        data = _lookup("configmap", sources.config_map, ns, src, f"volume {name}")
        return _items(data or {}, src.get("items"), f'configmap "{src["name"]}"', bool(src.get("optional")))

    def secret(src: Mapping[str, Any]) -> dict[str, str]:
        ref = {"name": src.get("secretName") or src.get("name"), "optional": src.get("optional")}
        data = _lookup("secret", sources.secret, ns, ref, f"volume {name}")
        return _items(data or {}, src.get("items"), f'secret "{ref["name"]}"', bool(src.get("optional")))

    def downward(src: Mapping[str, Any]) -> dict[str, str]:
        out = {}
        for it in src.get("items") or []:
            if "fieldRef" in it:
                out[it["path"]] = field_value(pod, it["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in it:
                ref = it["resourceFieldRef"]
                out[it["path"]] = resource_value(pod, ref.get("containerName", ""), ref, sources.allocatable)
            else:
                raise PodConfigError(f"volume {name}: unsupported downwardAPI item {sorted(it)}")
        return out

    if "configMap" in volume:
        return VolumeFiles(name, "files", config_map(volume["configMap"]))
    if "secret" in volume:
        return VolumeFiles(name, "files", secret(volume["secret"]))
    if "downwardAPI" in volume:
        return VolumeFiles(name, "files", downward(volume["downwardAPI"]))
    if "projected" in volume:
        files: dict[str, str] = {}
        for src in volume["projected"].get("sources") or []:
            if "serviceAccountToken" in src:
                st = src["serviceAccountToken"]
                aud = [st["audience"]] if st.get("audience") else None
                files[st["path"]] = token(ns, sa, aud, int(st.get("expirationSeconds") or 3600))
            elif "configMap" in src:
                files.update(config_map(src["configMap"]))
            elif "secret" in src:
                files.update(secret({**src["secret"], "secretName": src["secret"]["name"]}))
            elif "downwardAPI" in src:
                files.update(downward(src["downwardAPI"]))
            else:
                raise PodConfigError(f"volume {name}: unsupported projected source {sorted(src)}")
        return VolumeFiles(name, "files", files)
    kinds = sorted(k for k in volume if k != "name")
    raise PodConfigError(
        f"volume {name}: type {kinds} is not supported by the process node agent "
        "(emptyDir, hostPath, configMap, secret, downwardAPI and projected are)")


# --------------------------------------------------------------------------------------------
# cluster DNS as a hosts file


@dataclass(frozen=True)
class ServiceAddresses:
    namespace: str
    name: str
    ips: tuple[str, ...]  # ready endpoint pod IPs (no kube-proxy: Service IPs are not served)


def hosts_file(pod_ip: str, pod_name: str, namespace: str, services: list[ServiceAddresses],
               extra: Mapping[str, str] | None = None, hostname: str = "", subdomain: str = "") -> str:
    """A hosts file giving a pod the names cluster DNS would: ``<svc>``, ``<svc>.<ns>``,
    ``<svc>.<ns>.svc`` and ``<svc>.<ns>.svc.cluster.local`` -> the Service's ready endpoint IPs
    (short forms only for the pod's own namespace), and the pod's own hostname."""
    lines = ["# written by the swarm-arena process node agent (tests/controlplane)",
             "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    own = [hostname or pod_name]
    if subdomain:
        own.insert(0, f"{hostname or pod_name}.{subdomain}.{namespace}.svc.{CLUSTER_DOMAIN}")
    lines.append(f"{pod_ip}\t" + " ".join(own))
    for name, ip in sorted((extra or {}).items()):
        lines.append(f"{ip}\t{name}")
    for svc in sorted(services, key=lambda s: (s.namespace, s.name)):
        names = [f"{svc.name}.{svc.namespace}.svc.{CLUSTER_DOMAIN}", f"{svc.name}.{svc.namespace}.svc",
                 f"{svc.name}.{svc.namespace}"]
        if svc.namespace == namespace:
            names.append(svc.name)
        for ip in svc.ips:
            lines.append(f"{ip}\t" + " ".join(names))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# probes


@dataclass(frozen=True)
class Probe:
    kind: str  # "exec" | "http" | "tcp"
    command: tuple[str, ...] = ()
    port: int = 0
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    initial_delay: float = 0
    period: float = 10
    timeout: float = 1
    success_threshold: int = 1
    failure_threshold: int = 3


def _port(container: Mapping[str, Any], port: Any) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise PodConfigError(f"container {container['name']}: probe names port {port!r}, which it does not declare")


def probe(container: Mapping[str, Any], which: str) -> Probe | None:
    """``which`` is "readinessProbe", "livenessProbe" or "startupProbe"."""
    p = container.get(which)
    if not p:
        return None
    common = dict(initial_delay=p.get("initialDelaySeconds", 0), period=p.get("periodSeconds", 10),
                  timeout=p.get("timeoutSeconds", 1), success_threshold=p.get("successThreshold", 1),
                  failure_threshold=p.get("failureThreshold", 3))
    if "exec" in p:
        return Probe("exec", command=tuple(p["exec"]["command"]), **common)
    if "httpGet" in p:
        h = p["httpGet"]
        return Probe("http", port=_port(container, h["port"]), path=h.get("path", "/"),
                     scheme=h.get("scheme", "HTTP"),
                     headers=tuple((x["name"], x["value"]) for x in h.get("httpHeaders") or []), **common)
    if "tcpSocket" in p:
        return Probe("tcp", port=_port(container, p["tcpSocket"]["port"]), **common)
    raise PodConfigError(f"container {container['name']}: unsupported {which} {sorted(p)}")
