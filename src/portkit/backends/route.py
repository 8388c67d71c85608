"""The kernel's route for one destination: ``ip -j route get``.

``ip route get`` asks the kernel's FIB exactly as a packet would (policy rules, metrics,
source selection), so portkit does not re-implement routing. ``from SRC iif DEV`` asks
the forwarding question a router faces for a packet that came in on DEV.

    [{"dst":"10.71.3.2","gateway":"10.71.1.1","dev":"lan","prefsrc":"10.71.1.2","flags":[],...}]
    -> RouteFact("10.71.3.2", "unicast", dev="lan", source="10.71.1.2", gateway="10.71.1.1")

A missing route is an answer ("RTNETLINK answers: Network is unreachable" -> kind "none"),
not an error. ``ip`` is a few milliseconds; pyroute2 costs ~200 ms to import.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from portkit.errors import PrivilegeError, SystemRefused
from portkit.model.diagnosis import RouteFact

__all__ = ["ip_binary", "parse_route_get", "route_get"]

_NO_ROUTE_HINTS = (
    "unreachable",
    "No route",
    "prohibit",
    "Invalid cross-device",
    "blackhole",
    "Invalid argument",
)


def ip_binary() -> str:
    found = shutil.which("ip")
    if found:
        return found
    for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"):
        if os.access(p, os.X_OK):
            return p
    raise SystemRefused("the ip command (iproute2) is not installed", hint="apt-get install iproute2")


def parse_route_get(destination: str, text: str) -> RouteFact:
    """The first route of ``ip -j route get`` output (see the module docstring)."""
    data = json.loads(text) if text.strip() else []
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        return RouteFact(destination, "none", error="ip route get returned no route")
    r = data[0]
    rtype = r.get("type", "unicast")
    if rtype in ("blackhole", "unreachable", "prohibit", "throw"):
        return RouteFact(destination, "none", dev=r.get("dev"), error=f"{rtype} route")
    return RouteFact(
        destination=str(r.get("dst", destination)),
        kind="local" if rtype == "local" else "unicast",
        dev=r.get("dev"),
        source=r.get("prefsrc"),
        gateway=r.get("gateway"),
    )


def route_get(
    destination: str,
    *,
    source: str | None = None,
    iif: str | None = None,
    netns: str | None = None,
    timeout: float = 5.0,
) -> RouteFact:
    """The route to ``destination`` (optionally as forwarded: ``from source iif dev``)."""
    argv = [ip_binary()]
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
        raise SystemRefused(f"cannot run ip: {exc.strerror}") from exc
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        first = err[0] if err else f"exit status {proc.returncode}"
        first = first.removeprefix("RTNETLINK answers: ").strip()
        if "Operation not permitted" in first and not any(h in first for h in _NO_ROUTE_HINTS):
            raise PrivilegeError(f"ip route get {destination}: {first}")
        if any(h in first for h in _NO_ROUTE_HINTS):
            return RouteFact(destination, "none", error=first)
        raise SystemRefused(f"ip route get {destination}: {first}")
    try:
        return parse_route_get(destination, proc.stdout)
    except (ValueError, KeyError) as exc:
        raise SystemRefused(f"ip route get {destination}: unreadable output ({exc})") from exc
