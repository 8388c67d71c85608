"""Why a port cannot be reached: a pure reasoning step over a recorded snapshot of facts.

Theory of operation. The gathering step (backends/facts.py) records a :class:`Facts`
snapshot from one vantage point; its ``roles`` say which part of the path this host plays:

* ``client`` — we originate the connection: resolution, route, outbound rules, the probe,
  and (when the probe dies on the way) the port-aimed trace;
* ``router`` — a prerouting DNAT matches here (or ``--from`` names a client elsewhere and
  the target is elsewhere too): the DNAT, the forward hook, and the translated destination;
* ``server`` — the target address is ours: the input hook for the client's packet, and the
  socket table on that port.

Each role contributes checks (pass/fail/unknown/skipped, one per fact) and findings.
A finding is *blocking* when it alone stops the connection. Findings are sorted along the
path (client, path, router, server), so the first blocking one is the main cause, as a
packet would meet it. When no blocking finding exists, the result is REACHABLE only if
every check the roles require passed; if one of them could not be determined the main
finding is UNKNOWN, listing what is missing and why — never a guess.

Observation beats configuration: an open probe means reachable whatever the evaluated
rules said, and the disagreement is reported as evidence. The reverse disagreement —
every rule here accepts but the probe dies — is FILTERED_ON_PATH: something outside this
host drops the packet, and the trace names the last hop that answered.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from portkit.engine.findings import (
    N_,
    MessageFactory,
    Texts,
    check,
    ev_listener,
    ev_packet,
    ev_probe,
    ev_route,
    ev_rule,
    ev_trace,
    ev_unknown,
    finding,
    fix_allow,
    hostport,
    is_loopback,
    l3,
)
from portkit.model.diagnosis import (
    STAGE_ORDER,
    Check,
    Code,
    Diagnosis,
    Facts,
    Finding,
    ForwardPath,
    Listener,
    Localizable,
    Stage,
)

__all__ = ["diagnose", "listener_covers"]

PROHIBITED = ("admin-prohibited", "host-prohibited", "net-prohibited")
NO_WAY = ("net-unreach", "host-unreach")
CLOSED_REASONS = ("conn-refused", "reset", "port-unreach")


def listener_covers(listener_address: str, target: str) -> bool:
    """Does a socket bound to ``listener_address`` accept connections to ``target``?

    0.0.0.0 takes every IPv4 address; :: every IPv6 one and, Linux's default (bindv6only=0),
    every IPv4 one too; otherwise the addresses must be equal (IPv4-mapped forms included).
    """
    try:
        la = ipaddress.ip_address(listener_address.split("%")[0])
        ta = ipaddress.ip_address(target.split("%")[0])
    except ValueError:
        return listener_address == target
    if isinstance(la, ipaddress.IPv6Address) and la.ipv4_mapped is not None:
        la = la.ipv4_mapped
    if isinstance(ta, ipaddress.IPv6Address) and ta.ipv4_mapped is not None:
        ta = ta.ipv4_mapped
    if la.is_unspecified:
        return la.version == 6 or ta.version == 4
    return la == ta


def diagnose(facts: Facts, make: MessageFactory) -> Diagnosis:
    """Turn a Facts snapshot into findings (main cause first) and checks."""
    return _Reasoner(facts, Texts(make)).run()


class _Reasoner:
    def __init__(self, facts: Facts, T: Texts) -> None:
        self.f = facts
        self.T = T
        self.checks: list[Check] = []
        self.findings: list[Finding] = []
        self.required: list[str] = []  # check names that must pass for REACHABLE
        self.extra_evidence: list[Localizable] = []

    # ------------------------------------------------------------------ helpers
    def add_check(self, name: str, status: str, detail: Localizable) -> None:
        self.checks.append(check(name, status, detail))

    def status_of(self, name: str) -> str | None:
        for c in self.checks:
            if c.name == name:
                return c.status
        return None

    def unknown_check(self, name: str) -> bool:
        """Record an 'unknown' check when the gatherer said this fact is undetermined."""
        u = self.f.unknown(name)
        if u is None:
            return False
        self.add_check(name, "unknown", ev_unknown(self.T, u))
        return True

    @property
    def endpoint(self) -> str:
        return hostport(self.f.address or self.f.target, self.f.port)

    # ------------------------------------------------------------------ main
    def run(self) -> Diagnosis:
        f, T = self.f, self.T
        self.resolution()
        if f.address is None:
            for name in ("route", "outbound", "probe", "trace", "listen", "inbound", "dnat", "forward", "conntrack"):
                self.add_check(name, "skipped", T(N_("skipped: the name does not resolve")))
            return self.finish()
        if "client" in f.roles:
            self.route()
            self.outbound()
            self.probe()
            self.trace()
        if "server" in f.roles:
            self.inbound()
            self.listen()
        if "router" in f.roles:
            for fp in f.forwards:
                self.forward_path(fp)
            if not f.forwards:
                self.add_check("forward", "skipped", T(N_("no forwarding path was examined")))
        self.conntrack()
        if "client" in f.roles:
            self.client_conclusion()
        return self.finish()

    def finish(self) -> Diagnosis:
        f, T = self.f, self.T
        blocking = [x for x in self.findings if x._blocking]
        notes = [x for x in self.findings if not x._blocking]
        blocking.sort(key=lambda x: STAGE_ORDER[Stage(x._stage)])
        head: list[Finding] = []
        reachable = False
        if not blocking:
            # An open probe proves the path from here; a local probe says nothing about remote clients.
            open_probe = f.probe is not None and f.probe.state == "open" and f.roles == frozenset({"client"})
            undetermined = [n for n in self.required if self.status_of(n) != "pass"]
            if undetermined and not open_probe:
                evidence = [ev_unknown(T, u) for u in f.unknowns if u.what in undetermined]
                for name in undetermined:
                    if f.unknown(name) is None:
                        evidence.append(T(N_("{what} could not be determined"), what=name))
                evidence.extend(self.extra_evidence)
                reasons = " ".join(u.reason for u in f.unknowns if u.what in undetermined).lower()
                privilege = any(w in reasons for w in ("root", "privilege", "cap_net", "permission", "not permitted"))
                head.append(
                    finding(
                        Code.UNKNOWN,
                        Stage.CLIENT,
                        T(
                            N_("cannot tell whether {endpoint}/{proto} is reachable: {what} could not be determined"),
                            endpoint=self.endpoint,
                            proto=f.proto,
                            what=", ".join(undetermined),
                        ),
                        evidence,
                        T(N_("run portkit why as root (reading the firewall rules and every socket's owner needs it)"))
                        if privilege
                        else None,
                    )
                )
            else:
                reachable = True
                head.append(self.reachable_finding())
        elif self.extra_evidence:
            main = blocking[0]
            blocking[0] = replace(
                main,
                evidence=main.evidence + tuple(e.english() for e in self.extra_evidence),
                _evidence_text=main._evidence_text + tuple(self.extra_evidence),
            )
        ordered = head + blocking + sorted(notes, key=lambda x: STAGE_ORDER[Stage(x._stage)])
        return Diagnosis(
            target=f.target,
            address=f.address,
            port=f.port,
            proto=f.proto,
            reachable=reachable,
            findings=tuple(ordered),
            checks=tuple(self.checks),
            _roles=f.roles,
            _trace=f.trace,
        )

    def reachable_finding(self) -> Finding:
        f, T = self.f, self.T
        evidence: list[Localizable] = []
        if f.probe is not None and f.probe.state == "open":
            evidence.append(ev_probe(T, f.probe))
        for s in f.listeners or ():
            if f.address and listener_covers(s.address, f.address):
                evidence.append(ev_listener(T, s))
        if f.inbound is not None and "server" in f.roles:
            evidence.append(ev_rule(T, f.inbound))
        for fp in f.forwards:
            if fp.dnat is not None:
                evidence.append(T(N_("DNAT rule: {rule}"), rule=fp.dnat.rule))
            if fp.forward is not None:
                evidence.append(ev_rule(T, fp.forward))
            if fp.probe is not None:
                evidence.append(ev_probe(T, fp.probe))
        evidence.extend(self.extra_evidence)
        message = (
            T(N_("{endpoint}/{proto} is reachable from {client}"), endpoint=self.endpoint, proto=f.proto, client=f.client)
            if f.client and "client" not in f.roles
            else T(N_("{endpoint}/{proto} is reachable"), endpoint=self.endpoint, proto=f.proto)
        )
        return finding(
            Code.REACHABLE,
            Stage.CLIENT,
            message,
            evidence,
            None,
            blocking=False,
        )

    # ------------------------------------------------------------------ client
    def resolution(self) -> None:
        f, T = self.f, self.T
        r = f.resolution
        if r is None:
            self.add_check("resolve", "skipped", T(N_("{target} is an address; nothing to resolve"), target=f.target))
            return
        if f.address is None:
            detail = T(N_("{name} does not resolve: {error}"), name=r.name, error=r.error or "no address")
            self.add_check("resolve", "fail", detail)
            self.findings.append(
                finding(
                    Code.NAME_NOT_RESOLVED,
                    Stage.CLIENT,
                    T(N_("the name {name} does not resolve to any address"), name=r.name),
                    [detail],
                    T(N_("check the spelling, then /etc/hosts and DNS: getent ahosts {name}"), name=r.name),
                )
            )
            return
        addrs = ", ".join((*r.ipv4, *r.ipv6))
        self.add_check(
            "resolve",
            "pass",
            T(N_("{name} resolves to {addresses}; using {address}"), name=r.name, addresses=addrs, address=f.address),
        )

    def route(self) -> None:
        f, T = self.f, self.T
        r = f.route
        if r is None:
            if not self.unknown_check("route"):
                self.add_check("route", "skipped", T(N_("the route was not looked up")))
            return
        if r.kind == "none":
            self.add_check("route", "fail", ev_route(T, r))
            self.findings.append(
                finding(
                    Code.NO_ROUTE,
                    Stage.CLIENT,
                    T(N_("this host has no route to {address}"), address=r.destination),
                    [ev_route(T, r)],
                    T(N_("add a route: ip route add {address} via GATEWAY (or set a default route)"), address=r.destination),
                )
            )
            return
        self.add_check("route", "pass", ev_route(T, r))

    def outbound(self) -> None:
        f, T = self.f, self.T
        v = f.outbound
        if v is None:
            if not self.unknown_check("outbound"):
                self.add_check("outbound", "skipped", T(N_("outbound rules were not evaluated")))
            return
        if v.verdict == "accept":
            if v.where:
                self.add_check("outbound", "pass", T(N_("the outbound rules accept it ({where})"), where=v.where))
            else:
                self.add_check("outbound", "pass", T(N_("nothing filters outbound packets here (no output chain)")))
            return
        self.add_check(
            "outbound", "fail", T(N_("the outbound rules {verdict} it ({where})"), verdict=v.verdict, where=v.where)
        )
        if f.probe is not None and f.probe.state == "open":
            # The probe got out: the evaluation disagrees with the kernel. Report it, trust the probe.
            self.extra_evidence.append(
                T(
                    N_("the outbound rules evaluate to {verdict} ({where}), yet the probe got through"),
                    verdict=v.verdict,
                    where=v.where,
                )
            )
            return
        self.findings.append(
            finding(
                Code.FIREWALL_OUTBOUND,
                Stage.CLIENT,
                T(
                    N_("this host's outbound rules {verdict} {proto} to {endpoint}"),
                    verdict=v.verdict,
                    proto=f.proto,
                    endpoint=self.endpoint,
                ),
                [ev_rule(T, v), ev_packet(T, v)],
                fix_allow(T, v, direction="out", proto=f.proto, port=f.port, peer=None, dst=f.address or f.target),
            )
        )

    def probe(self) -> None:
        f, T = self.f, self.T
        p = f.probe
        if p is None:
            if not self.unknown_check("probe"):
                why = T(N_("skipped: no route")) if f.route and f.route.kind == "none" else T(N_("no probe was sent"))
                self.add_check("probe", "skipped", why)
            return
        status = {"open": "pass", "open|filtered": "unknown"}.get(p.state, "fail")
        self.add_check("probe", status, ev_probe(T, p))
        if f.other_family is not None:
            self.add_check("probe_other_family", {"open": "pass"}.get(f.other_family.state, "fail"), ev_probe(T, f.other_family))

    def trace(self) -> None:
        f, T = self.f, self.T
        t = f.trace
        if t is None:
            if not self.unknown_check("trace"):
                self.add_check("trace", "skipped", T(N_("not needed")))
            return
        lines = ev_trace(T, t)
        self.add_check("trace", "pass" if t.reached else "fail", lines[-1])

    def client_conclusion(self) -> None:
        """What the probe says, once the client's own facts are known."""
        f, T = self.f, self.T
        p = f.probe
        if p is None:
            if f.route is None or f.route.kind != "none":
                self.required.append("probe")
            return
        if p.state == "open":
            self.required.append("probe")
            if f.other_family is not None and f.other_family.state != "open":
                self.extra_evidence.append(
                    T(N_("the other address family fails: {probe}"), probe=ev_probe(T, f.other_family).english())
                )
            return
        if f.local_target or "server" in f.roles:
            return  # a probe of our own address: the server checks say more than the loopback path does
        evidence: list[Localizable] = [ev_probe(T, p)]
        if f.trace is not None:
            evidence.extend(ev_trace(T, f.trace))
        if f.other_family is not None and f.other_family.state == "open":
            evidence.append(T(N_("the other address family works: {probe}"), probe=ev_probe(T, f.other_family).english()))
        sender = p.reason_from or p.address
        if any(x.code == Code.FIREWALL_OUTBOUND for x in self.findings):
            return  # the outbound drop explains the failed probe already
        if p.state == "closed" or p.reason in CLOSED_REASONS:
            self.findings.append(
                finding(
                    Code.NOT_LISTENING,
                    Stage.SERVER,
                    T(
                        N_("{address} answers, but nothing accepts {proto} port {port} there ({reason})"),
                        address=p.address,
                        proto=f.proto,
                        port=f.port,
                        reason=p.reason,
                    ),
                    [*evidence, T(N_("a reset can also come from a rule that rejects with tcp reset"))]
                    if p.reason == "conn-refused" or p.reason == "reset"
                    else evidence,
                    T(
                        N_("on {address}, start the service on port {port} (portkit why {endpoint} there names the cause)"),
                        address=p.address,
                        port=f.port,
                        endpoint=self.endpoint,
                    ),
                )
            )
            return
        if p.reason in PROHIBITED:
            if sender == p.address:
                self.findings.append(
                    finding(
                        Code.FIREWALL_INBOUND_REJECT,
                        Stage.SERVER,
                        T(
                            N_("{address} rejects {proto} port {port} with ICMP {reason}"),
                            address=p.address,
                            proto=f.proto,
                            port=f.port,
                            reason=p.reason,
                        ),
                        evidence,
                        T(
                            N_("on {address}, allow it: portkit fw allow {port}/{proto} --from {client}"),
                            address=p.address,
                            port=f.port,
                            proto=f.proto,
                            client=f.client or "CLIENT",
                        ),
                    )
                )
            else:
                self.findings.append(
                    finding(
                        Code.FILTERED_ON_PATH,
                        Stage.PATH,
                        T(
                            N_("the router {sender} rejects the packet on the way (ICMP {reason})"),
                            sender=sender,
                            reason=p.reason,
                        ),
                        evidence,
                        T(
                            N_("on {sender}, run portkit why {endpoint}/{proto} --from {client} to see the rule"),
                            sender=sender,
                            endpoint=self.endpoint,
                            proto=f.proto,
                            client=f.client or "CLIENT",
                        ),
                    )
                )
            return
        if p.reason in NO_WAY:
            self.findings.append(
                finding(
                    Code.NO_ROUTE,
                    Stage.PATH,
                    T(N_("{sender} reports {reason}: it cannot deliver to {address}"), sender=sender, reason=p.reason, address=p.address),
                    evidence,
                    T(N_("check the routes on {sender} and that {address} is up"), sender=sender, address=p.address),
                )
            )
            return
        if p.reason == "no-response" and p.state == "filtered":
            if self.status_of("outbound") == "pass":
                last = f.trace.last_hop if f.trace else None
                ttl = f.trace.last_hop_ttl if f.trace else None
                if last is not None:
                    msg = T(
                        N_(
                            "the rules on this host accept {proto} to {endpoint}, but the probe gets no answer: "
                            "something outside this host drops it after hop {ttl} ({hop})"
                        ),
                        proto=f.proto,
                        endpoint=self.endpoint,
                        ttl=ttl or 0,
                        hop=last,
                    )
                    fix = T(
                        N_("look at the forward rules of {hop} and the firewall of the next host: run portkit why {endpoint}/{proto} --from {client} there"),
                        hop=last,
                        endpoint=self.endpoint,
                        proto=f.proto,
                        client=f.client or "CLIENT",
                        address=p.address,
                    )
                else:
                    msg = T(
                        N_(
                            "the rules on this host accept {proto} to {endpoint}, but the probe gets no answer: "
                            "something outside this host drops it"
                        ),
                        proto=f.proto,
                        endpoint=self.endpoint,
                    )
                    fix = T(
                        N_("run portkit why {endpoint}/{proto} --from {client} on {address} (and on the routers between)"),
                        endpoint=self.endpoint,
                        proto=f.proto,
                        client=f.client or "CLIENT",
                        address=p.address,
                    )
                self.findings.append(finding(Code.FILTERED_ON_PATH, Stage.PATH, msg, evidence, fix))
                return
            self.extra_evidence.extend(evidence)
            self.required.append("outbound")
            return
        # open|filtered (UDP silence), other ICMP: nothing certain can be said from here.
        self.extra_evidence.extend(evidence)
        if p.state == "open|filtered":
            self.extra_evidence.append(
                T(N_("no reply and no ICMP error: a UDP service may stay silent, or something drops the datagram"))
            )
        self.required.append("probe")

    # ------------------------------------------------------------------ server
    def inbound(self) -> None:
        f, T = self.f, self.T
        self.required.append("inbound")
        v = f.inbound
        if v is None:
            if not self.unknown_check("inbound"):
                self.add_check("inbound", "unknown", T(N_("the inbound rules were not evaluated")))
            return
        if v.verdict == "accept":
            if v.where:
                self.add_check("inbound", "pass", T(N_("the inbound rules accept {packet} ({where})"), packet=v.packet, where=v.where))
            else:
                self.add_check("inbound", "pass", T(N_("nothing filters {packet} (no input chain)"), packet=v.packet))
            return
        self.add_check("inbound", "fail", T(N_("the inbound rules {verdict} {packet} ({where})"), verdict=v.verdict, packet=v.packet, where=v.where))
        code = Code.FIREWALL_INBOUND_REJECT if v.verdict == "reject" else Code.FIREWALL_INBOUND_DROP
        message = (
            T(N_("the inbound rules reject {proto} port {port} from {client}"), proto=f.proto, port=f.port, client=f.client or "outside")
            if v.verdict == "reject"
            else T(N_("the inbound rules drop {proto} port {port} from {client}"), proto=f.proto, port=f.port, client=f.client or "outside")
        )
        self.findings.append(
            finding(
                code,
                Stage.SERVER,
                message,
                [ev_rule(T, v), ev_packet(T, v)],
                fix_allow(T, v, direction="in", proto=f.proto, port=f.port, peer=f.client, dst=f.address or f.target),
            )
        )

    def listen(self) -> None:
        f, T = self.f, self.T
        self.required.append("listen")
        if f.listeners is None:
            if not self.unknown_check("listen"):
                self.add_check("listen", "unknown", T(N_("the socket table was not read")))
            return
        address = f.address or f.target
        code, message, fix = self.judge_listeners(f.listeners, address, f.port, forward=None)
        if code is None:
            s = next(s for s in f.listeners if listener_covers(s.address, address))
            self.add_check("listen", "pass", ev_listener(T, s))
            return
        self.add_check("listen", "fail", message)
        evidence = [ev_listener(T, s) for s in f.listeners] or [
            T(N_("socket table: no {proto} socket is bound to port {port}"), proto=f.proto, port=f.port)
        ]
        self.findings.append(finding(code, Stage.SERVER, message, evidence, fix))

    def judge_listeners(
        self, listeners: tuple[Listener, ...], address: str, port: int, *, forward: ForwardPath | None
    ) -> tuple[Code | None, Localizable, Localizable | None]:
        """NOT_LISTENING / LOOPBACK_ONLY / BOUND_TO_OTHER_ADDRESS, or None when a socket takes it."""
        T, proto = self.T, self.f.proto
        if any(listener_covers(s.address, address) for s in listeners):
            return None, T(N_("listening")), None
        if not listeners:
            if forward is not None and forward.dnat is not None:
                near = ", ".join(f"{s.port} ({s.process or '?'})" for s in forward.nearby[:5])
                msg = T(
                    N_("the forward of port {port} points at {target}, but nothing listens there"),
                    port=self.f.port,
                    target=hostport(address, port),
                )
                if forward.nearby:
                    closest = min(forward.nearby, key=lambda s: abs(s.port - port))
                    fix = T(
                        N_("forward {port} points at {to_port} but the service listens on {actual}: change the forward to {actual}, or move the service to {to_port}"),
                        port=self.f.port,
                        to_port=port,
                        actual=closest.port,
                    )
                    msg = T(
                        N_("the forward of port {port} points at {target}, but nothing listens there (listening nearby: {near})"),
                        port=self.f.port,
                        target=hostport(address, port),
                        near=near,
                    )
                else:
                    fix = T(
                        N_("start the service on {target}, or point the forward at the port it listens on"),
                        target=hostport(address, port),
                    )
                return Code.FORWARD_TARGET_NOT_LISTENING, msg, fix
            return (
                Code.NOT_LISTENING,
                T(N_("nothing listens on {proto} port {port} on this host"), proto=proto, port=port),
                T(N_("start the service on port {port} (or check the port in its configuration)"), port=port),
            )
        held = ", ".join(sorted({hostport(s.address, s.port) for s in listeners}))
        proc = next((s.process for s in listeners if s.process), None) or "the service"
        wildcard = "::" if l3(address) == "ip6" else "0.0.0.0"
        if all(is_loopback(s.address) for s in listeners) and not is_loopback(address):
            return (
                Code.LOOPBACK_ONLY,
                T(
                    N_("{process} listens on {held} only (loopback): connections to {address} cannot reach it"),
                    process=proc,
                    held=held,
                    address=address,
                ),
                T(
                    N_("bind to {wildcard} or {address} instead of {held} (in {process}'s configuration)"),
                    wildcard=wildcard,
                    address=address,
                    held=held,
                    process=proc,
                ),
            )
        return (
            Code.BOUND_TO_OTHER_ADDRESS,
            T(N_("{process} listens on {held}, not on {address}"), process=proc, held=held, address=address),
            T(
                N_("bind to {wildcard} or {address} instead of {held} (in {process}'s configuration)"),
                wildcard=wildcard,
                address=address,
                held=held,
                process=proc,
            ),
        )

    # ------------------------------------------------------------------ router
    def forward_path(self, fp: ForwardPath) -> None:
        f, T = self.f, self.T
        evidence: list[Localizable] = []
        target = hostport(fp.destination, fp.port)
        if fp.dnat is not None:
            dnat_ev = T(N_("DNAT rule: {rule}"), rule=fp.dnat.rule)
            evidence.append(dnat_ev)
            self.add_check("dnat", "pass", T(N_("{port} is forwarded to {target} by {rule}"), port=f.port, target=target, rule=fp.dnat.rule))
            if f.inbound is not None:
                # Informational: what the input hook would say without the DNAT (the Docker trap).
                self.add_check(
                    "inbound",
                    "pass" if f.inbound.verdict == "accept" else "fail",
                    T(
                        N_("without the DNAT, the inbound rules would {verdict} {packet}"),
                        verdict=f.inbound.verdict,
                        packet=f.inbound.packet,
                    ),
                )
        elif not self.unknown_check("dnat"):
            self.add_check("dnat", "skipped", T(N_("no DNAT rule matches; the packet is routed to {target}"), target=target))
        for c in f.conntrack:
            evidence.append(T(N_("conntrack: {original} became {translated}"), original=c.original, translated=c.translated))
        # 1. the forward hook (not for a DNAT to this host itself: that goes through input)
        if not fp.target_local:
            self.required.append("forward")
            v = fp.forward
            if v is None:
                if not self.unknown_check("forward"):
                    self.add_check("forward", "unknown", T(N_("the forward rules were not evaluated")))
                return
            if v.verdict != "accept":
                self.add_check("forward", "fail", T(N_("the forward rules {verdict} {packet} ({where})"), verdict=v.verdict, packet=v.packet, where=v.where))
                self.findings.append(
                    finding(
                        Code.FIREWALL_FORWARD,
                        Stage.ROUTER,
                        T(
                            N_("this router's forward rules {verdict} {proto} to {target}"),
                            verdict=v.verdict,
                            proto=f.proto,
                            target=target,
                        ),
                        [*evidence, ev_rule(T, v), ev_packet(T, v)],
                        fix_allow(T, v, direction="forward", proto=f.proto, port=fp.port, peer=f.client, dst=fp.destination),
                    )
                )
                return
            if v.where:
                self.add_check("forward", "pass", T(N_("the forward rules accept {packet} ({where})"), packet=v.packet, where=v.where))
            else:
                self.add_check("forward", "pass", T(N_("nothing filters {packet} (no forward chain)"), packet=v.packet))
            evidence.append(ev_rule(T, v))
        # 2. the destination beyond the router
        self.required.append("forward_target")
        dead = self.forward_target(fp, evidence)
        # 3. the Docker trap: the input hook would refuse the port, the DNAT publishes it anyway
        inbound = f.inbound
        if fp.dnat is not None and not fp.target_local and inbound is not None and inbound.verdict in ("drop", "reject") and not dead:
            fam, table, chain = (fp.forward.family or "inet", fp.forward.table, fp.forward.chain) if fp.forward else ("inet", None, None)
            self.findings.append(
                finding(
                    Code.EXPOSED_DESPITE_INBOUND_DENY,
                    Stage.ROUTER,
                    T(
                        N_(
                            "port {port} is reachable through the DNAT to {target} although the inbound rules {verdict} it: "
                            "forwarded packets never pass the input hook"
                        ),
                        port=f.port,
                        target=target,
                        verdict=inbound.verdict,
                    ),
                    [*evidence, ev_rule(T, inbound)],
                    T(
                        N_("filter it where forwarded packets pass: nft insert rule {family} {table} {chain} {l3} daddr {address} {proto} dport {to_port} ct status dnat drop (Docker: the DOCKER-USER chain), or publish on 127.0.0.1 only"),
                        family=fam,
                        table=table or "TABLE",
                        chain=chain or "FORWARD_CHAIN",
                        l3=l3(fp.destination),
                        address=fp.destination,
                        proto=f.proto,
                        to_port=fp.port,
                    ),
                    blocking=False,
                )
            )

    def forward_target(self, fp: ForwardPath, evidence: list[Localizable]) -> bool:
        """Check the translated destination; True when it is known not to work."""
        f, T = self.f, self.T
        target = hostport(fp.destination, fp.port)
        if fp.target_local:
            if fp.listeners is None:
                if not self.unknown_check("forward_target"):
                    self.add_check("forward_target", "unknown", T(N_("the socket table was not read")))
                return False
            code, message, fix = self.judge_listeners(fp.listeners, fp.destination, fp.port, forward=fp)
            if code is None:
                s = next(s for s in fp.listeners if listener_covers(s.address, fp.destination))
                self.add_check("forward_target", "pass", ev_listener(T, s))
                evidence.append(ev_listener(T, s))
                return False
            if code is not Code.FORWARD_TARGET_NOT_LISTENING and fp.dnat is not None:
                code = Code.FORWARD_TARGET_NOT_LISTENING
            self.add_check("forward_target", "fail", message)
            self.findings.append(
                finding(code, Stage.SERVER, message, [*evidence, *(ev_listener(T, s) for s in fp.listeners)], fix)
            )
            return True
        if fp.route is not None and fp.route.kind == "none":
            self.add_check("forward_target", "fail", ev_route(T, fp.route))
            self.findings.append(
                finding(
                    Code.FORWARD_TARGET_UNREACHABLE,
                    Stage.ROUTER,
                    T(N_("this router has no route to the forward target {target}"), target=target),
                    [*evidence, ev_route(T, fp.route)],
                    T(N_("add a route to {address} on this router, or fix the forward's target address"), address=fp.destination),
                )
            )
            return True
        p = fp.probe
        if p is None:
            if not self.unknown_check("forward_target"):
                self.add_check("forward_target", "unknown", T(N_("the forward target was not probed")))
            return False
        if p.state == "open":
            self.add_check("forward_target", "pass", ev_probe(T, p))
            evidence.append(ev_probe(T, p))
            return False
        if p.state == "closed" or p.reason in CLOSED_REASONS:
            self.add_check("forward_target", "fail", ev_probe(T, p))
            self.findings.append(
                finding(
                    Code.FORWARD_TARGET_NOT_LISTENING,
                    Stage.SERVER,
                    T(
                        N_("the forward of port {port} points at {target}, but nothing listens there ({reason})"),
                        port=f.port,
                        target=target,
                        reason=p.reason,
                    ),
                    [*evidence, ev_probe(T, p)],
                    T(
                        N_("start the service on {target}, or point the forward at the port it listens on (portkit ls on {address} shows it)"),
                        target=target,
                        address=fp.destination,
                    ),
                )
            )
            return True
        if p.state == "open|filtered":
            self.add_check("forward_target", "unknown", ev_probe(T, p))
            return False
        self.add_check("forward_target", "fail", ev_probe(T, p))
        self.findings.append(
            finding(
                Code.FORWARD_TARGET_UNREACHABLE,
                Stage.ROUTER,
                T(
                    N_("the forward target {target} does not answer from this router ({reason})"),
                    target=target,
                    reason=p.reason if not p.reason_from else f"{p.reason} from {p.reason_from}",
                ),
                [*evidence, ev_probe(T, p)],
                T(
                    N_("check that {address} is up and that its firewall lets {proto} port {port} in (portkit why {target} on {address})"),
                    address=fp.destination,
                    proto=f.proto,
                    port=fp.port,
                    target=target,
                ),
            )
        )
        return True

    # ------------------------------------------------------------------ conntrack
    def conntrack(self) -> None:
        f, T = self.f, self.T
        if f.conntrack:
            c = f.conntrack[0]
            self.add_check("conntrack", "pass", T(N_("conntrack: {original} became {translated}"), original=c.original, translated=c.translated))
        elif not self.unknown_check("conntrack"):
            self.add_check("conntrack", "skipped", T(N_("no translated flow in conntrack")))
