"""portkit.api functions for the why domain: why a port cannot be reached, and where it dies.

import portkit
d = portkit.why("db.lab:3306")            # -> Diagnosis; d.findings[0] is the main cause
d.reachable, d.findings[0].code, d.findings[0].fix
t = portkit.trace("10.0.2.2:80")           # -> TraceResult; t.last_hop
"""

from __future__ import annotations

from portkit.model.diagnosis import Diagnosis, Facts
from portkit.model.trace import TraceResult

__all__: list[str] = ["trace", "why", "why_facts"]


def why_facts(
    target: str,
    *,
    from_addr: str | None = None,
    timeout: float = 1.0,
    retries: int = 1,
    trace: bool = True,
    family: int | None = None,
) -> Facts:
    """Gather the facts about ``TARGET:PORT[/proto]`` from this host (no reasoning)."""
    from portkit.backends.facts import GatherOptions, gather
    from portkit.engine.endpoint import parse_endpoint

    ep = parse_endpoint(target)
    if from_addr is not None:
        from_addr = _address(from_addr, "--from")
    if family not in (None, 4, 6):
        from portkit.errors import InputError

        raise InputError(f"invalid family {family!r}; valid ones are: 4, 6")
    opts = GatherOptions(from_addr=from_addr, timeout=timeout, retries=retries, trace=trace, family=family)
    return gather(ep.host, ep.port, ep.proto, opts)


def why(
    target: str,
    *,
    from_addr: str | None = None,
    timeout: float = 1.0,
    retries: int = 1,
    trace: bool = True,
    family: int | None = None,
) -> Diagnosis:
    """Why ``TARGET:PORT[/proto]`` can or cannot be reached, from this host's vantage point.

    ``from_addr`` names the client: one of this host's addresses (we are the client and
    send from it), or another host's (we are the server or a router between). A name that
    does not resolve is a finding (NAME_NOT_RESOLVED), not an error.
    """
    from portkit.engine.diagnosis import diagnose
    from portkit.i18n import Message

    facts = why_facts(
        target, from_addr=from_addr, timeout=timeout, retries=retries, trace=trace, family=family
    )
    return diagnose(facts, Message)


def trace(
    target: str,
    *,
    max_ttl: int = 30,
    timeout: float = 1.0,
    tries: int = 2,
    family: int | None = None,
    method: str = "auto",
) -> TraceResult:
    """Traceroute aimed at ``TARGET:PORT[/proto]``: hops up to the port's answer or the last hop.

    ``method``: "auto" (the sockets' error queue, plus a raw ICMP listener when root),
    "recverr" (error queue only, no privilege) or "raw" (raw ICMP listener only; root).
    """
    from portkit.backends.facts import system_resolve
    from portkit.drivers.trace import trace_port
    from portkit.engine.endpoint import parse_endpoint
    from portkit.errors import InputError, ResolveError

    ep = parse_endpoint(target)
    host = ep.host.strip("[]")
    try:
        address = _address(host, "target")
    except InputError:
        v4, v6 = system_resolve(host)
        pick = list(v4 if family == 4 else v6 if family == 6 else (*v4, *v6))
        if not pick:
            raise ResolveError(host, f"no IPv{family} address" if family else "no address") from None
        address = pick[0]
    return trace_port(
        address,
        ep.port,
        ep.proto,
        target=ep.host,
        max_ttl=max_ttl,
        timeout=timeout,
        tries=tries,
        method=method,
    )


def _address(text: str, what: str) -> str:
    from portkit.engine.endpoint import parse_address
    from portkit.errors import TargetError

    ip = parse_address(text.strip(" ").strip("[]"), what=f"{what} address")  # link-local needs %iface
    if ip is None:
        raise TargetError(f"invalid {what} address {text!r}: give an IPv4 or IPv6 address")
    return str(ip)
