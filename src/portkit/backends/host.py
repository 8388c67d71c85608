"""The host's own facts, each read one way: local addresses, routes, name resolution, tools.

Every function takes ``netns`` (an ``ip netns`` name; None for the namespace portkit runs
in) where the answer depends on the namespace, and reads it from inside that namespace.

* :func:`local_addresses`: the kernel's local routes (``/proc/net/fib_trie``) and IPv6
  addresses (``/proc/net/if_inet6``), read from /proc inside the namespace: no subprocess,
  fast enough for every ``fw check``; psutil when /proc cannot be read.
* :func:`route_get`: the kernel's route for one destination, asked over netlink
  (``RTM_GETROUTE``, exactly as ``ip route get`` asks), ``ip -j route get`` as the
  fallback. A missing route is an answer (kind ``"none"`` and the kernel's words), not an
  error. :func:`route_dev` is the interface alone, for the firewall evaluator.
* :func:`resolve`: ``getaddrinfo`` (``/etc/hosts``, then DNS; inside ``ip netns exec`` the
  namespace's own files), with ``numeric=True`` for callers that take addresses only.
* :func:`find_tool` / :func:`require_tool`: a command on ``$PATH`` or in the sbin
  directories a root shell has but a service's PATH may lack.

Example of the route parser (``ip -j route get`` output)::

    [{"dst":"10.71.3.2","gateway":"10.71.1.1","dev":"lan","prefsrc":"10.71.1.2","flags":[]}]
    -> RouteFact("10.71.3.2", "unicast", dev="lan", source="10.71.1.2", gateway="10.71.1.1")
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from portkit.errors import PortkitError, PrivilegeError, ResolveError, SystemRefused, map_os_error

if TYPE_CHECKING:  # imported where a route is built: fw check's start-up does not need it
    from portkit.model.diagnosis import RouteFact

__all__ = [
    "default_route_dev",
    "find_tool",
    "interface_addresses",
    "interface_index",
    "local_addresses",
    "parse_route_get",
    "require_tool",
    "resolve",
    "route_dev",
    "route_get",
]

T = TypeVar("T")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SockAddr = tuple[Any, ...]

#: Where root's tools live when $PATH (a service's, a sudo'ed one) does not list them.
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def _in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    from portkit.backends.netns import netns_path, run_in_netns

    return run_in_netns(netns_path(netns) if netns is not None else None, fn)


# --------------------------------------------------------------------------- tools


def find_tool(name: str) -> str | None:
    """The path of command ``name``: on $PATH, else in :data:`SBIN_DIRS`; None if absent."""
    import shutil  # not at top: it pulls in lzma and bz2, and start-up time matters

    found = shutil.which(name)
    if found:
        return found
    for d in SBIN_DIRS:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def require_tool(name: str, *, package: str, what: str | None = None) -> str:
    """:func:`find_tool`, or SystemRefused naming the Debian package that has it."""
    found = find_tool(name)
    if found is None:
        raise SystemRefused(f"the {what or name} command is not installed", hint=f"apt-get install {package}")
    return found


# --------------------------------------------------------------------------- addresses


def _proc_local_addresses() -> list[str] | None:
    """This thread's namespace's local addresses from /proc; None when it cannot be read."""
    out: list[str] = []
    try:
        with open("/proc/thread-self/net/fib_trie") as f:
            lines = f.read().splitlines()
    except OSError:
        return None  # /proc not mounted or not readable here: the caller falls back to psutil
    last = ""
    for line in lines:  # "  |-- 10.0.0.1" then "     /32 host LOCAL"
        text = line.strip()
        if text.startswith("|--"):
            last = text[3:].strip()
        elif text.startswith("/32 host LOCAL") and last:
            out.append(last)
    try:
        with open("/proc/thread-self/net/if_inet6") as f:
            for line in f:
                hexaddr = line.split()[0]
                out.append(":".join(hexaddr[i : i + 4] for i in range(0, 32, 4)))
    except OSError:
        pass  # no IPv6 in this kernel
    return out


def _psutil_local_addresses() -> list[str]:
    import psutil

    return [a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs]


def local_addresses(*, netns: str | None = None) -> frozenset[IPAddress]:
    """Every local address of the namespace (IPv4 and IPv6, link-local included)."""

    def read() -> list[str]:
        got = _proc_local_addresses()
        return got if got is not None else _psutil_local_addresses()

    out: set[IPAddress] = set()
    for text in _in_netns(netns, read):
        try:
            out.add(ipaddress.ip_address(text))
        except ValueError:
            continue  # a MAC address (psutil's AF_PACKET rows)
    return frozenset(out)


def _ip_json(args: list[str], netns: str | None) -> Any:
    argv = [find_tool("ip") or "ip", *(["-n", netns] if netns else []), "-j", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None  # no ip, or it hung: no answer, which each caller treats as "unknown"
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return None


def interface_index(name: str) -> int | None:
    """The index of interface ``name`` in this thread's namespace; None when there is none
    (``if_nametoindex`` says so with an OSError that carries no errno: an answer, not a failure)."""
    try:
        return socket.if_nametoindex(name)
    except (OSError, ValueError):  # ValueError: a name with a NUL
        return None


def interface_addresses(*, netns: str | None = None) -> dict[str, list[str]]:
    """{interface: [address, ...]} of the namespace (``ip -j addr``)."""
    data = _ip_json(["addr", "show"], netns)
    out: dict[str, list[str]] = {}
    for link in data or []:
        addrs = [a["local"] for a in link.get("addr_info", []) if "local" in a]
        out[str(link.get("ifname"))] = addrs
    return out


def default_route_dev(*, family: int = 4, netns: str | None = None) -> str | None:
    """The interface of the namespace's default route for ``family`` (4 or 6), or None."""
    data = _ip_json([f"-{family}", "route", "show", "default"], netns)
    if isinstance(data, list) and data and isinstance(data[0], dict) and data[0].get("dev"):
        return str(data[0]["dev"])
    return None


# --------------------------------------------------------------------------- routes

_NO_ROUTE_HINTS = ("unreachable", "No route", "prohibit", "Invalid cross-device", "blackhole", "Invalid argument")
# rtm_type -> the name ``ip -j`` gives it (linux/rtnetlink.h)
_RTN_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole",
              7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat", 11: "xresolve"}  # fmt: skip
_RTA_DST, _RTA_SRC, _RTA_IIF, _RTA_OIF, _RTA_GATEWAY, _RTA_PREFSRC = 1, 2, 3, 4, 5, 7
_RTM_NEWROUTE, _RTM_GETROUTE, _NLMSG_ERROR, _NLM_F_REQUEST = 24, 26, 2, 1


# A route as the lookups return it: (destination, kind, dev, source, gateway, error), the
# fields of RouteFact. A plain tuple, so that ``fw check`` (which wants the interface
# alone) does not import the diagnosis model.
_Route = tuple[str, str, str | None, str | None, str | None, str | None]


def _fact(r: _Route) -> RouteFact:
    from portkit.model.diagnosis import RouteFact

    return RouteFact(*r)


def _route_from_text(destination: str, first: str) -> _Route:
    """The answer to a failed lookup, from the kernel's words (as ``ip`` prints them)."""
    if "Operation not permitted" in first and not any(h in first for h in _NO_ROUTE_HINTS):
        raise PrivilegeError(f"ip route get {destination}: {first}")
    if any(h in first for h in _NO_ROUTE_HINTS):
        return (destination, "none", None, None, None, first)
    raise SystemRefused(f"ip route get {destination}: {first}")


def _route_fact(destination: str, rtype: str, dst: str | None, dev: str | None, prefsrc: str | None, gateway: str | None) -> _Route:
    if rtype in ("blackhole", "unreachable", "prohibit", "throw"):
        return (destination, "none", dev, None, None, f"{rtype} route")
    return (dst or destination, "local" if rtype == "local" else "unicast", dev, prefsrc, gateway, None)


def parse_route_get(destination: str, text: str) -> RouteFact:
    """The first route of ``ip -j route get`` output (see the module docstring)."""
    return _fact(_parse_route_get(destination, text))


def _parse_route_get(destination: str, text: str) -> _Route:
    data = json.loads(text) if text.strip() else []
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        return (destination, "none", None, None, None, "ip route get returned no route")
    r = data[0]
    return _route_fact(destination, str(r.get("type", "unicast")), r.get("dst"), r.get("dev"), r.get("prefsrc"), r.get("gateway"))


def _netlink_route(destination: str, source: str | None, iif: str | None, timeout: float) -> _Route | None:
    """RTM_GETROUTE in this thread's namespace; None when netlink cannot answer (then the
    caller asks ``ip``). Interface names are looked up here, in the same namespace."""
    from portkit.parse.netlink_tlv import attrs

    try:
        dst = ipaddress.ip_address(destination)
        src = ipaddress.ip_address(source) if source else None
    except ValueError:
        return None  # let ip say what is wrong with it
    if src is not None and src.version != dst.version:
        return None
    fam = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    bits = 32 if dst.version == 4 else 128
    body = struct.pack("=BBBBBBBBI", fam, bits, bits if src is not None else 0, 0, 0, 0, 0, 0, 0)
    body += struct.pack("=HH", 4 + len(dst.packed), _RTA_DST) + dst.packed
    if src is not None:
        body += struct.pack("=HH", 4 + len(src.packed), _RTA_SRC) + src.packed
    if iif is not None:
        index = interface_index(iif)
        if index is None:  # in ip's words, as the fallback below says it
            raise SystemRefused(f'ip route get {destination}: Cannot find device "{iif}"')
        body += struct.pack("=HHI", 8, _RTA_IIF, index)
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
    except OSError:
        return None  # no netlink here (a sandbox): the caller asks ip instead
    with sock:
        try:
            sock.settimeout(timeout)
            sock.send(struct.pack("=IHHII", 16 + len(body), _RTM_GETROUTE, _NLM_F_REQUEST, 1, 0) + body)
            data = sock.recv(65536)
        except OSError:
            return None  # no answer in time: the caller asks ip instead
    if len(data) < 20:
        return None
    length, mtype = struct.unpack_from("=IH", data, 0)
    if mtype == _NLMSG_ERROR:
        (err,) = struct.unpack_from("=i", data, 16)
        return _route_from_text(destination, os.strerror(-err)) if err else None
    if mtype != _RTM_NEWROUTE or len(data) < 28:
        return None
    rtype = _RTN_TYPES.get(data[16 + 7], "unicast")
    a = attrs(data[:length], 16 + 12)

    def addr(key: int) -> str | None:
        raw = a.get(key)
        return str(ipaddress.ip_address(raw)) if raw is not None and len(raw) in (4, 16) else None

    dev = None
    oif = a.get(_RTA_OIF)
    if oif is not None and len(oif) == 4:
        try:
            dev = socket.if_indextoname(int.from_bytes(oif, sys.byteorder))
        except OSError:
            dev = None  # the interface went away since the kernel answered
    return _route_fact(destination, rtype, addr(_RTA_DST), dev, addr(_RTA_PREFSRC), addr(_RTA_GATEWAY))


def _ip_route_get(destination: str, source: str | None, iif: str | None, netns: str | None, timeout: float) -> _Route:
    argv = [require_tool("ip", package="iproute2", what="ip (iproute2)")]
    if netns:
        argv += ["-n", netns]
    argv += ["-j", "route", "get", destination]
    if source:
        argv += ["from", source]
    if iif:
        argv += ["iif", iif]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SystemRefused(f"ip route get {destination} did not answer within {timeout:.0f} s") from exc
    except OSError as exc:
        raise map_os_error(exc, f"cannot run {argv[0]}") from exc
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        first = err[0] if err else f"exit status {proc.returncode}"
        return _route_from_text(destination, first.removeprefix("RTNETLINK answers: ").strip())
    try:
        return _parse_route_get(destination, proc.stdout)
    except (ValueError, KeyError) as exc:
        raise SystemRefused(f"ip route get {destination}: unreadable output ({exc})") from exc


def route_get(
    destination: str,
    *,
    source: str | None = None,
    iif: str | None = None,
    netns: str | None = None,
    timeout: float = 5.0,
) -> RouteFact:
    """The route to ``destination`` (optionally as forwarded: ``from source iif dev``)."""
    return _fact(_lookup(destination, source, iif, netns, timeout))


def _lookup(destination: str, source: str | None, iif: str | None, netns: str | None, timeout: float) -> _Route:
    got = _in_netns(netns, lambda: _netlink_route(destination, source, iif, min(timeout, 2.0)))
    return got if got is not None else _ip_route_get(destination, source, iif, netns, timeout)


def route_dev(address: str, *, netns: str | None = None) -> str | None:
    """The interface the namespace routes ``address`` through ("lo" for one of its own
    addresses), or None when there is no route or it cannot be told."""
    try:
        _dest, kind, dev, *_rest = _lookup(address, None, None, netns, 5.0)
    except PortkitError:
        return None
    if kind == "local":
        return "lo"
    return dev if kind == "unicast" else None


# --------------------------------------------------------------------------- names


def resolve(name: str, port: int | None = None, *, socktype: int = socket.SOCK_STREAM, numeric: bool = False) -> list[tuple[int, SockAddr]]:
    """[(address family, sockaddr), ...] of ``name`` from the system resolver, both
    families, in the resolver's order, without repeats. ``numeric``: an address literal
    only (never a lookup). Raises ResolveError naming the name and the resolver's words."""
    flags = socket.AI_NUMERICHOST if numeric else 0
    try:
        infos = socket.getaddrinfo(name, port, socket.AF_UNSPEC, socktype, 0, flags)
    except socket.gaierror as exc:
        if numeric and exc.errno == socket.EAI_NONAME:
            raise ResolveError(name, "not an IP address") from None
        raise ResolveError(name, exc.strerror) from None
    except UnicodeError:
        raise ResolveError(name, "not a valid host name") from None
    out: list[tuple[int, SockAddr]] = []
    for fam, _type, _proto, _canon, sa in infos:
        item = (int(fam), tuple(sa))
        if item not in out:
            out.append(item)
    return out
