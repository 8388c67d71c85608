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

from dataclasses import replace

from portkit.engine.findings import (
    N_,
    MessageFactory,
    Texts,
    ev_listener,
    ev_packet,
    ev_probe,
    ev_route,
    ev_rule,
    ev_trace,
    ev_unknown,
    finding,
    fix_allow,
)
from portkit.engine.why_client import ClientSteps
from portkit.engine.why_router import RouterSteps
from portkit.engine.why_server import listener_covers
from portkit.model.diagnosis import (
    STAGE_ORDER,
    Code,
    Diagnosis,
    Facts,
    Finding,
    Localizable,
    Stage,
)

__all__ = ["diagnose", "listener_covers"]


def diagnose(facts: Facts, make: MessageFactory) -> Diagnosis:
    """Turn a Facts snapshot into findings (main cause first) and checks."""
    return _Reasoner(facts, Texts(make)).run()


class _Reasoner(ClientSteps, RouterSteps):
    def run(self) -> Diagnosis:
        f, T = self.f, self.T
        self.resolution()
        if f.address is None:
            for name in (
                "route",
                "outbound",
                "probe",
                "trace",
                "listen",
                "inbound",
                "dnat",
                "forward",
                "conntrack",
            ):
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
        blocking = [x for x in self.findings if x.blocking]
        notes = [x for x in self.findings if not x.blocking]
        blocking.sort(key=lambda x: STAGE_ORDER[Stage(x.stage)])
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
                privilege = any(
                    w in reasons for w in ("root", "privilege", "cap_net", "permission", "not permitted")
                )
                head.append(
                    finding(
                        Code.UNKNOWN,
                        Stage.CLIENT,
                        T(
                            N_(
                                "cannot tell whether {endpoint}/{proto} is reachable: {what} could not be determined"
                            ),
                            endpoint=self.endpoint,
                            proto=f.proto,
                            what=", ".join(undetermined),
                        ),
                        evidence,
                        T(
                            N_(
                                "run portkit why as root (reading the firewall rules and every socket's owner needs it)"
                            )
                        )
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
                evidence_text=main.evidence_text + tuple(self.extra_evidence),
            )
        ordered = head + blocking + sorted(notes, key=lambda x: STAGE_ORDER[Stage(x.stage)])
        return Diagnosis(
            target=f.target,
            address=f.address,
            port=f.port,
            proto=f.proto,
            reachable=reachable,
            findings=tuple(ordered),
            checks=tuple(self.checks),
            roles=f.roles,
            trace=f.trace,
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
            T(
                N_("{endpoint}/{proto} is reachable from {client}"),
                endpoint=self.endpoint,
                proto=f.proto,
                client=f.client,
            )
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
            self.add_check(
                "resolve", "skipped", T(N_("{target} is an address; nothing to resolve"), target=f.target)
            )
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
            T(
                N_("{name} resolves to {addresses}; using {address}"),
                name=r.name,
                addresses=addrs,
                address=f.address,
            ),
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
                    T(
                        N_("add a route: ip route add {address} via GATEWAY (or set a default route)"),
                        address=r.destination,
                    ),
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
                self.add_check(
                    "outbound", "pass", T(N_("the outbound rules accept it ({where})"), where=v.where)
                )
            else:
                self.add_check(
                    "outbound", "pass", T(N_("nothing filters outbound packets here (no output chain)"))
                )
            return
        self.add_check(
            "outbound",
            "fail",
            T(N_("the outbound rules {verdict} it ({where})"), verdict=v.verdict, where=v.where),
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
                fix_allow(
                    T, v, direction="out", proto=f.proto, port=f.port, peer=None, dst=f.address or f.target
                ),
            )
        )

    def probe(self) -> None:
        f, T = self.f, self.T
        p = f.probe
        if p is None:
            if not self.unknown_check("probe"):
                why = (
                    T(N_("skipped: no route"))
                    if f.route and f.route.kind == "none"
                    else T(N_("no probe was sent"))
                )
                self.add_check("probe", "skipped", why)
            return
        status = {"open": "pass", "open|filtered": "unknown"}.get(p.state, "fail")
        self.add_check("probe", status, ev_probe(T, p))
        if f.other_family is not None:
            self.add_check(
                "probe_other_family",
                {"open": "pass"}.get(f.other_family.state, "fail"),
                ev_probe(T, f.other_family),
            )

    def trace(self) -> None:
        f, T = self.f, self.T
        t = f.trace
        if t is None:
            if not self.unknown_check("trace"):
                self.add_check("trace", "skipped", T(N_("not needed")))
            return
        lines = ev_trace(T, t)
        self.add_check("trace", "pass" if t.reached else "fail", lines[-1])

    def conntrack(self) -> None:
        f, T = self.f, self.T
        if f.conntrack:
            c = f.conntrack[0]
            self.add_check(
                "conntrack",
                "pass",
                T(
                    N_("conntrack: {original} became {translated}"),
                    original=c.original,
                    translated=c.translated,
                ),
            )
        elif not self.unknown_check("conntrack"):
            self.add_check("conntrack", "skipped", T(N_("no translated flow in conntrack")))
