"""Gather the facts `portkit why` reasons about, from this host's point of view.

Every fact comes from another part of portkit (the socket table, the prober, the firewall
evaluator, conntrack) or from the kernel (``ip route get``, the resolver); this module only
decides which questions to ask from which vantage point, and records the answers — or why
one could not be had — in a :class:`~portkit.model.diagnosis.Facts` snapshot. The reasoning
is elsewhere (engine/diagnosis.py), so a snapshot can be replayed in tests.

Vantage points (``roles``):

* client — ``--from`` is absent or names one of this host's addresses: we originate;
* server — the target address is this host's and no DNAT takes the port elsewhere;
* router — a prerouting DNAT matches the packet, or ``--from`` names a host elsewhere
  and the target is elsewhere too (we are between them).

Without ``--from`` on a server, the client is "outside": a packet from 192.0.2.1
(2001:db8::1) arriving on the interface of the default route — the same convention as the
inbound column of the host report.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

from portkit.backends.host import resolve, route_get
from portkit.errors import ResolveError
from portkit.model.diagnosis import (
    ConntrackFact,
    DnatFact,
    Facts,
    ForwardPath,
    Listener,
    ProbeFact,
    Resolution,
    RuleVerdict,
    Unknown,
)
from portkit.model.trace import TraceResult
from portkit.ops.why_firewall import Firewall, Gathering, dnat_of, packet_text, why_unknown

__all__ = ["OUTSIDE", "GatherOptions", "gather", "system_resolve"]

OUTSIDE = {4: "192.0.2.1", 6: "2001:db8::1"}


@dataclass(frozen=True, slots=True)
class GatherOptions:
    from_addr: str | None = None
    timeout: float = 1.0  # per probe
    retries: int = 1
    trace: bool = True  # trace when the probe dies and the target is elsewhere
    family: int | None = None  # 4 or 6: use only that family of a name's addresses
    trace_fn: Callable[..., TraceResult] | None = None  # tests may inject
    resolver: Callable[[str], tuple[tuple[str, ...], tuple[str, ...]]] | None = None


def system_resolve(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(IPv4, IPv6) addresses of ``name`` from the system resolver (/etc/hosts, then DNS)."""
    v4: list[str] = []
    v6: list[str] = []
    for fam, sa in resolve(name):
        addr = str(sa[0]).split("%")[0]
        if fam == socket.AF_INET and addr not in v4:
            v4.append(addr)
        elif fam == socket.AF_INET6 and addr not in v6:
            v6.append(addr)
    return tuple(v4), tuple(v6)


def _version(address: str) -> int:
    return ipaddress.ip_address(address).version


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _probe(address: str, port: int, proto: str, opts: GatherOptions, vantage: str = "here") -> ProbeFact:
    from portkit.ops.probe import check

    host = f"[{address}]" if ":" in address else address
    report = check([f"{host}:{port}/{proto}"], timeout=opts.timeout, retries=opts.retries)
    r = report.results[0]
    return ProbeFact(
        address=r.address,
        port=r.port,
        proto=r.proto,
        state=str(getattr(r.state, "value", r.state)),
        reason=str(getattr(r.reason, "value", r.reason)),
        reason_from=r.reason_from,
        rtt_ms=r.rtt_ms,
        vantage=vantage,
    )


def _listeners(proto: str, port: int | None) -> tuple[Listener, ...]:
    from portkit.ops.inspect import list_sockets

    table = list_sockets(tcp=proto == "tcp", udp=proto == "udp", listening=True, port=port)
    return tuple(
        Listener(s.local_address, s.local_port, s.proto, s.process, s.pid)
        for s in table.sockets
        if s.proto == proto and (port is None or s.local_port == port)
    )


def _iface_of(address: str) -> str | None:
    """The interface that holds ``address`` on this host."""
    import psutil

    want = ipaddress.ip_address(address)
    for name, addrs in psutil.net_if_addrs().items():
        for a in addrs:
            try:
                if ipaddress.ip_address(a.address.split("%")[0]) == want:
                    return name
            except ValueError:
                continue
    return None


def gather(target: str, port: int, proto: str = "tcp", opts: GatherOptions | None = None) -> Facts:
    """Collect the facts for ``target:port/proto`` (see the module docstring)."""
    o = opts or GatherOptions()
    gathering = Gathering()
    host = target.strip("[]")

    # --- resolution
    resolution: Resolution | None = None
    address: str | None
    other: str | None = None
    if _is_address(host):
        address = str(ipaddress.ip_address(host))
    else:
        resolve = o.resolver or system_resolve
        try:
            v4, v6 = resolve(host)
        except ResolveError as exc:
            resolution = Resolution(host, error=str(exc).split(": ", 1)[-1])
            v4, v6 = (), ()
        else:
            resolution = Resolution(host, v4, v6)
        candidates = [*v4, *v6] if o.family is None else (list(v4) if o.family == 4 else list(v6))
        address = candidates[0] if candidates else None
        if address is not None and o.family is None:
            others = v6 if _version(address) == 4 else v4
            other = others[0] if others else None
        if resolution.error is None and address is None:
            resolution = Resolution(host, v4, v6, error=f"no IPv{o.family} address")
    if address is None:
        return Facts(
            target,
            port,
            proto,
            None,
            frozenset({"client"}),
            resolution=resolution,
            unknowns=tuple(gathering.unknowns),
        )

    fam = _version(address)
    roles: set[str] = set()
    from_local = False
    if o.from_addr is not None:
        fr = gathering.attempt("route", lambda: route_get(o.from_addr or ""))
        from_local = fr is not None and fr.kind == "local"
    if o.from_addr is None or from_local:
        roles.add("client")

    route = gathering.attempt("route", lambda: route_get(address, source=o.from_addr if from_local else None))
    local_target = route is not None and route.kind == "local"

    # --- who the client is, and where its packet enters this host
    client = o.from_addr
    if client is None and route is not None and route.kind != "none":
        client = route.source
    if local_target:
        if o.from_addr is not None and not from_local:
            src = o.from_addr
            back = gathering.attempt("route", lambda: route_get(src))
            iif = back.dev if back is not None else None
        elif ipaddress.ip_address(address).is_loopback:
            src, iif = address, "lo"
        else:
            src = OUTSIDE[fam]
            out = gathering.attempt("route", lambda: route_get(OUTSIDE[fam]))
            iif = (out.dev if out is not None and out.kind != "none" else None) or _iface_of(address)
            client = None  # "outside": any host
    else:
        src = o.from_addr or client or OUTSIDE[fam]
        iif = None
        if o.from_addr is not None and not from_local:
            back = gathering.attempt("route", lambda: route_get(src))
            iif = back.dev if back is not None else None
    src_label = f"{src} (outside)" if src in OUTSIDE.values() and o.from_addr is None else src

    outbound: RuleVerdict | None = None
    probe: ProbeFact | None = None
    trace: TraceResult | None = None
    other_probe: ProbeFact | None = None
    inbound: RuleVerdict | None = None
    listeners: tuple[Listener, ...] | None = None
    forwards: list[ForwardPath] = []

    # --- inbound first: a DNAT found here makes this host a router for the port
    fw = Firewall(gathering)
    dnat: DnatFact | None = None
    if local_target or (o.from_addr is not None and not from_local):
        pkt = packet_text(proto, src_label, address, port, iif=iif)
        if iif == "lo" and fw.ruleset is not None:
            # A client on this host: its connection meets the output hook's NAT first, which
            # fixes the translation; prerouting's nat chains never see it (Docker's
            # `OUTPUT ! -d 127.0.0.0/8 -j DOCKER` leaves 127.0.0.1 to docker-proxy).
            out_res = fw.check("outbound", hook="out", proto=proto, src=src, dst=address, dport=port, oif="lo")
            out_dnat = dnat_of(out_res, address, port) if out_res is not None else None
            in_res = fw.check(
                "inbound", hook="in", proto=proto, src=src, dst=address, dport=port, iif=iif, ruleset=fw.without_nat()
            )
        else:
            out_dnat = None
            in_res = fw.check("inbound", hook="in", proto=proto, src=src, dst=address, dport=port, iif=iif)
        if in_res is not None:
            dnat = out_dnat or dnat_of(in_res, address, port)
            if dnat is None and local_target:
                inbound = fw.verdict(in_res, "in", pkt)
                if inbound is None:
                    gathering.unknowns.append(Unknown("inbound", why_unknown(in_res)))
            elif dnat is not None and fw.ruleset is not None:
                bare = fw.without_nat()
                res = fw.check(
                    "inbound", hook="in", proto=proto, src=src, dst=address, dport=port, iif=iif, ruleset=bare
                )
                inbound = fw.verdict(res, "in", pkt) if res is not None else None
    if local_target and dnat is None:
        roles.add("server")
        listeners = gathering.attempt("listen", lambda: _listeners(proto, port))
    if dnat is not None or (o.from_addr is not None and not from_local and not local_target):
        roles.add("router")
        forwards.append(_forward_path(gathering, fw, o, proto, src, src_label, iif, address, port, dnat))
        if local_target:
            # Our own connection to our DNAT'd address never meets prerouting: probing it
            # from here would test something no client experiences.
            roles.discard("client")

    # --- the client's own view
    if "client" in roles and route is not None and route.kind != "none":
        csrc = route.source or client or src
        out_pkt = packet_text(proto, csrc, address, port, oif=route.dev)
        res = fw.check("outbound", hook="out", proto=proto, src=csrc, dst=address, dport=port, oif=route.dev)
        if res is not None:
            outbound = fw.verdict(res, "out", out_pkt)
            if outbound is None:
                gathering.unknowns.append(Unknown("outbound", why_unknown(res)))
        blocked_here = outbound is not None and outbound.verdict != "accept"
        probe = gathering.attempt("probe", lambda: _probe(address, port, proto, o, vantage=csrc))
        if (
            not local_target
            and o.trace
            and not blocked_here
            and probe is not None
            and probe.state != "open"
            and probe.reason == "no-response"
        ):
            # The trace runs only after the probe died without an answer: running it beside
            # the probe completed a handshake per TTL that reached an open port (issue 13
            # item 15). Unanswered, the port cannot complete one for the trace either, and
            # the trace stops at the first hop that is the destination.
            src_bind = o.from_addr if from_local else None
            trace = gathering.attempt(
                "trace",
                lambda: (o.trace_fn or _default_trace)(
                    address, port, proto, target=target, source=src_bind, timeout=o.timeout
                ),
            )
        if other is not None and (probe is None or probe.state != "open"):
            other_probe = gathering.attempt(
                "probe_other_family", lambda: _probe(other or "", port, proto, o, vantage="this host")
            )

    conntrack = gathering.attempt("conntrack", lambda: _conntrack(port, proto, address)) or ()

    return Facts(
        target=target,
        port=port,
        proto=proto,
        address=address,
        roles=frozenset(roles),
        client=client if o.from_addr is None else o.from_addr,
        resolution=resolution,
        route=route,
        local_target=local_target,
        outbound=outbound,
        probe=probe,
        trace=trace,
        listeners=listeners,
        inbound=inbound,
        forwards=tuple(forwards),
        conntrack=conntrack,
        other_family=other_probe,
        unknowns=tuple(gathering.unknowns),
    )


def _default_trace(
    address: str,
    port: int,
    proto: str,
    *,
    target: str | None = None,
    source: str | None = None,
    timeout: float = 1.0,
) -> TraceResult:
    from portkit.drivers.trace import trace_port

    return trace_port(address, port, proto, target=target, source=source, timeout=timeout)


def _forward_path(
    gathering: Gathering,
    fw: Firewall,
    o: GatherOptions,
    proto: str,
    src: str,
    src_label: str,
    iif: str | None,
    address: str,
    port: int,
    dnat: DnatFact | None,
) -> ForwardPath:
    dest, dport = (dnat.to_address, dnat.to_port) if dnat is not None else (address, port)
    route = gathering.attempt("forward_target", lambda: route_get(dest))
    if route is not None and route.kind == "local":
        listeners = gathering.attempt("forward_target", lambda: _listeners(proto, dport))
        nearby: tuple[Listener, ...] = ()
        if listeners is not None and not listeners:
            every = gathering.attempt("forward_target", lambda: _listeners(proto, None)) or ()
            nearby = tuple(s for s in every if s.address in (dest, "0.0.0.0", "::"))
        return ForwardPath(
            dest, dport, dnat, None, route, target_local=True, listeners=listeners, nearby=nearby
        )
    oif = route.dev if route is not None else None
    pkt = packet_text(proto, src_label, dest, dport, iif=iif, oif=oif)
    if dnat is not None:
        # Walk the original packet again, now knowing where it leaves: prerouting's DNAT, then
        # forward with the conntrack status a DNAT'd flow has (Docker matches `ct status dnat`).
        res = fw.check("forward", hook="in", proto=proto, src=src, dst=address, dport=port, iif=iif, oif=oif)
    else:
        res = fw.check(
            "forward", hook="forward", proto=proto, src=src, dst=dest, dport=dport, iif=iif, oif=oif
        )
    forward = fw.verdict(res, "forward", pkt) if res is not None else None
    if res is not None and forward is None:
        gathering.unknowns.append(Unknown("forward", why_unknown(res)))
    probe = None
    if route is not None and route.kind != "none":
        probe = gathering.attempt(
            "forward_target", lambda: _probe(dest, dport, proto, o, vantage=route.source or "this router")
        )
    return ForwardPath(dest, dport, dnat, forward, route, probe=probe)


def _conntrack(port: int, proto: str, address: str) -> tuple[ConntrackFact, ...]:
    from portkit.ops.forward import nat_entries

    out: list[ConntrackFact] = []
    for e in nat_entries(port=port, proto=proto):
        o, t = e.original, e.translated
        if o.dport != port or o.dst != address:
            continue
        out.append(
            ConntrackFact(
                original=f"{e.proto} {o.src}:{o.sport} -> {o.dst}:{o.dport}",
                translated=f"{t.src}:{t.sport} -> {t.dst}:{t.dport}",
                state=e.state,
            )
        )
    return tuple(out[:5])
