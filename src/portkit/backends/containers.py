"""Containers: which ones run, their published ports, and their network namespaces.

Docker and Podman are asked through the Docker Engine API with the ``docker`` SDK
(``pip install portkit[containers]``), imported only when containers are asked about, so
commands that never touch containers start as fast as before. The socket is
``DOCKER_HOST``, else ``/var/run/docker.sock``; Podman's Docker-compatible socket is
``/run/podman/podman.sock`` (rootful) or ``$XDG_RUNTIME_DIR/podman/podman.sock``.

Without the SDK or without a daemon answering, containers are found in ``/proc``: the
cgroup path of a process names its container id (``docker-<id>.scope``, ``/docker/<id>``,
``libpod-<id>``), and the lowest pid with that id gives the namespace, so
``--netns container:ID`` still works, with the id as the only name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from portkit.errors import InputError

PREFIX = "container:"
PROXY_PROCESSES = frozenset({"docker-proxy", "rootlessport", "conmon", "pasta", "slirp4netns", "pasta.avx2"})
_CGROUP_ID = re.compile(r"(?:docker-|/docker/|libpod-|/libpod/)([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class Published:
    """One published port: ``host_ip:host_port`` -> the container's ``container_port``."""

    proto: str
    host_ip: str
    host_port: int
    container_port: int


@dataclass(frozen=True, slots=True)
class Container:
    runtime: str  # "docker" | "podman"
    id: str  # full id
    name: str
    image: str
    state: str
    pid: int | None
    addresses: tuple[str, ...]
    published: tuple[Published, ...]

    @property
    def short_id(self) -> str:
        return self.id[:12]


def api_sockets() -> list[tuple[str, str]]:
    """(runtime, base_url) of every Engine API socket worth asking, in order."""
    out: list[tuple[str, str]] = []
    host = os.environ.get("DOCKER_HOST")
    if host:
        out.append(("podman" if "podman" in host else "docker", host))
    else:
        out.append(("docker", "unix:///var/run/docker.sock"))
    out.append(("podman", "unix:///run/podman/podman.sock"))
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        out.append(("podman", f"unix://{xdg}/podman/podman.sock"))
    seen: set[str] = set()
    uniq = []
    for rt, url in out:
        if url in seen:
            continue
        seen.add(url)
        if url.startswith("unix://") and not os.path.exists(url[len("unix://") :]):
            continue
        uniq.append((rt, url))
    return uniq


def _from_api(runtime: str, url: str, include_stopped: bool) -> list[Container] | None:
    try:
        import docker  # type: ignore[import-untyped]  # optional extra: portkit[containers]
    except ImportError:
        return None
    try:
        client = docker.APIClient(base_url=url, timeout=5, version="auto")
        listed = client.containers(all=include_stopped)
        out: list[Container] = []
        for c in listed:
            info = client.inspect_container(c["Id"])
            state = info.get("State") or {}
            nets = ((info.get("NetworkSettings") or {}).get("Networks") or {}).values()
            addrs = tuple(a for n in nets for a in (n.get("IPAddress"), n.get("GlobalIPv6Address")) if a)
            pubs: list[Published] = []
            for key, binds in ((info.get("NetworkSettings") or {}).get("Ports") or {}).items():
                cport, _, proto = key.partition("/")
                for b in binds or ():
                    try:
                        pubs.append(Published(proto or "tcp", b.get("HostIp") or "0.0.0.0", int(b["HostPort"]), int(cport)))
                    except (KeyError, ValueError):
                        continue
            pid = state.get("Pid") or None
            name = (info.get("Name") or c["Id"][:12]).lstrip("/")
            image = (info.get("Config") or {}).get("Image") or c.get("Image") or ""
            out.append(Container(runtime, c["Id"], name, image, state.get("Status") or "", pid, addrs, tuple(pubs)))
        client.close()
        return out
    except Exception:  # a daemon not answering means: try the next source
        return None


def _from_proc() -> list[Container]:
    lowest: dict[str, int] = {}
    runtime: dict[str, str] = {}
    try:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cgroup", encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        m = _CGROUP_ID.search(text)
        if m is None:
            continue
        cid = m.group(1)
        if cid not in lowest or pid < lowest[cid]:
            lowest[cid] = pid
            runtime[cid] = "podman" if "libpod" in m.group(0) else "docker"
    return [Container(runtime[c], c, c[:12], "", "running", p, (), ()) for c, p in sorted(lowest.items())]


def list_containers(include_stopped: bool = False) -> tuple[list[Container], str]:
    """The containers every reachable runtime knows, and where they came from
    (``"api"`` or ``"proc"``)."""
    found: list[Container] = []
    asked = False
    for rt, url in api_sockets():
        got = _from_api(rt, url, include_stopped)
        if got is not None:
            asked = True
            found.extend(got)
    if asked:
        return found, "api"
    return _from_proc(), "proc"


def find(spec: str, containers: list[Container] | None = None) -> Container:
    """The container named ``spec`` (its name, or a unique prefix of its id)."""
    if not spec or len(spec) > 256:
        raise InputError(f"invalid container name {spec!r}; give a container name or id prefix")
    cs = containers if containers is not None else list_containers()[0]
    exact = [c for c in cs if c.name == spec or c.id == spec]
    if not exact:
        exact = [c for c in cs if c.id.startswith(spec.lower())]
    if len(exact) == 1:
        return exact[0]
    if not exact:
        known = ", ".join(sorted(c.name for c in cs)[:20]) or "none"
        raise InputError(f"no running container named {spec!r}; running ones are: {known}")
    raise InputError(f"container id prefix {spec!r} is ambiguous: " + ", ".join(c.short_id for c in exact))


def netns_path(spec: str) -> str:
    """``/proc/PID/ns/net`` of container ``spec`` (``--netns container:NAME``)."""
    c = find(spec)
    if not c.pid:
        raise InputError(f"container {c.name!r} is not running ({c.state or 'no process'})")
    return f"/proc/{c.pid}/ns/net"


def proxy_target(pid: int) -> tuple[str, int] | None:
    """The container address and port a ``docker-proxy`` process forwards to, from its
    command line (``-container-ip A -container-port N``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().decode(errors="replace").split("\0")
    except OSError:
        return None
    ip = port = None
    for i, a in enumerate(args[:-1]):
        if a in ("-container-ip", "--container-ip"):
            ip = args[i + 1]
        elif a in ("-container-port", "--container-port"):
            port = args[i + 1]
    if ip is None or port is None or not port.isdigit():
        return None
    return ip, int(port)
