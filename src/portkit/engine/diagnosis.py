"""Why a port cannot be reached: a pure reasoning step over a recorded snapshot of facts.

Theory of operation. The gathering step (ops/why_gather.py) records a :class:`Facts`
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
from portkit.engine.why_flows import current_flows
from portkit.engine.why_router import RouterSteps
from portkit.engine.why_server import listener_covers
from portkit.model.diagnosis import (
    STAGE_ORDER,
    Code,
    Diagnosis,
    Facts,
    Finding,
    Stage,
)
from portkit.model.text import N_, Localizable

__all__ = ["diagnose", "listener_covers"]


def diagnose(facts: Facts, make: MessageFactory) -> Diagnosis:
    """Turn a Facts snapshot into findings (main cause first) and checks."""
    return _Reasoner(facts, Texts(make)).run()


class _Reasoner(ClientSteps, RouterSteps):
    def run(self) -> Diagnosis:
        facts, text = self.facts, self.text
        self.resolution()
        if facts.address is None:
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
                self.add_check(name, "skipped", text(N_("skipped: the name does not resolve")))
            return self.finish()
        if "client" in facts.roles:
            self.route()
            self.outbound()
            self.probe()
            self.trace()
        if "server" in facts.roles:
            self.inbound()
            self.listen()
        if "router" in facts.roles:
            for fp in facts.forwards:
                self.forward_path(fp)
            if not facts.forwards:
                self.add_check("forward", "skipped", text(N_("no forwarding path was examined")))
        self.conntrack()
        if "client" in facts.roles:
            self.client_conclusion()
        return self.finish()

    def finish(self) -> Diagnosis:
        facts, text = self.facts, self.text
        blocking = [x for x in self.findings if x.blocking]
        notes = [x for x in self.findings if not x.blocking]
        blocking.sort(key=lambda x: STAGE_ORDER[Stage(x.stage)])
        head: list[Finding] = []
        reachable = False
        if not blocking:
            # An open probe proves the path from here; a local probe says nothing about remote clients.
            open_probe = facts.probe is not None and facts.probe.state == "open" and facts.roles == frozenset({"client"})
            undetermined = [n for n in self.required if self.status_of(n) != "pass"]
            if undetermined and not open_probe:
                evidence = [ev_unknown(text, u) for u in facts.unknowns if u.what in undetermined]
                for name in undetermined:
                    if facts.unknown(name) is None:
                        evidence.append(text(N_("{what} could not be determined"), what=name))
                evidence.extend(self.extra_evidence)
                reasons = " ".join(u.reason for u in facts.unknowns if u.what in undetermined).lower()
                privilege = any(
                    w in reasons for w in ("root", "privilege", "cap_net", "permission", "not permitted")
                )
                head.append(
                    finding(
                        Code.UNKNOWN,
                        Stage.CLIENT,
                        text(
                            N_(
                                "cannot tell whether {endpoint}/{proto} is reachable: {what} could not be determined"
                            ),
                            endpoint=self.endpoint,
                            proto=facts.proto,
                            what=", ".join(undetermined),
                        ),
                        evidence,
                        text(
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
            target=facts.target,
            address=facts.address,
            port=facts.port,
            proto=facts.proto,
            reachable=reachable,
            findings=tuple(ordered),
            checks=tuple(self.checks),
            roles=facts.roles,
            trace=facts.trace,
        )

    def reachable_finding(self) -> Finding:
        facts, text = self.facts, self.text
        evidence: list[Localizable] = []
        if facts.probe is not None and facts.probe.state == "open":
            evidence.append(ev_probe(text, facts.probe))
        for s in facts.listeners or ():
            if facts.address and listener_covers(s.address, facts.address):
                evidence.append(ev_listener(text, s))
        if facts.inbound is not None and "server" in facts.roles:
            evidence.append(ev_rule(text, facts.inbound))
        for fp in facts.forwards:
            if fp.dnat is not None:
                evidence.append(text(N_("DNAT rule: {rule}"), rule=fp.dnat.rule))
            if fp.forward is not None:
                evidence.append(ev_rule(text, fp.forward))
            if fp.probe is not None:
                evidence.append(ev_probe(text, fp.probe))
        evidence.extend(self.extra_evidence)
        message = (
            text(
                N_("{endpoint}/{proto} is reachable from {client}"),
                endpoint=self.endpoint,
                proto=facts.proto,
                client=facts.client,
            )
            if facts.client and "client" not in facts.roles
            else text(N_("{endpoint}/{proto} is reachable"), endpoint=self.endpoint, proto=facts.proto)
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
        facts, text = self.facts, self.text
        r = facts.resolution
        if r is None:
            self.add_check(
                "resolve", "skipped", text(N_("{target} is an address; nothing to resolve"), target=facts.target)
            )
            return
        if facts.address is None:
            detail = text(N_("{name} does not resolve: {error}"), name=r.name, error=r.error or "no address")
            self.add_check("resolve", "fail", detail)
            self.findings.append(
                finding(
                    Code.NAME_NOT_RESOLVED,
                    Stage.CLIENT,
                    text(N_("the name {name} does not resolve to any address"), name=r.name),
                    [detail],
                    text(N_("check the spelling, then /etc/hosts and DNS: getent ahosts {name}"), name=r.name),
                )
            )
            return
        addrs = ", ".join((*r.ipv4, *r.ipv6))
        self.add_check(
            "resolve",
            "pass",
            text(
                N_("{name} resolves to {addresses}; using {address}"),
                name=r.name,
                addresses=addrs,
                address=facts.address,
            ),
        )

    def route(self) -> None:
        facts, text = self.facts, self.text
        r = facts.route
        if r is None:
            if not self.unknown_check("route"):
                self.add_check("route", "skipped", text(N_("the route was not looked up")))
            return
        if r.kind == "none":
            self.add_check("route", "fail", ev_route(text, r))
            self.findings.append(
                finding(
                    Code.NO_ROUTE,
                    Stage.CLIENT,
                    text(N_("this host has no route to {address}"), address=r.destination),
                    [ev_route(text, r)],
                    text(
                        N_("add a route: ip route add {address} via GATEWAY (or set a default route)"),
                        address=r.destination,
                    ),
                )
            )
            return
        self.add_check("route", "pass", ev_route(text, r))

    def outbound(self) -> None:
        facts, text = self.facts, self.text
        v = facts.outbound
        if v is None:
            if not self.unknown_check("outbound"):
                self.add_check("outbound", "skipped", text(N_("outbound rules were not evaluated")))
            return
        if v.verdict == "accept":
            if v.where:
                self.add_check(
                    "outbound", "pass", text(N_("the outbound rules accept it ({where})"), where=v.where)
                )
            else:
                self.add_check(
                    "outbound", "pass", text(N_("nothing filters outbound packets here (no output chain)"))
                )
            return
        self.add_check(
            "outbound",
            "fail",
            text(N_("the outbound rules {verdict} it ({where})"), verdict=v.verdict, where=v.where),
        )
        if facts.probe is not None and facts.probe.state == "open":
            # The probe got out: the evaluation disagrees with the kernel. Report it, trust the probe.
            self.extra_evidence.append(
                text(
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
                text(
                    N_("this host's outbound rules {verdict} {proto} to {endpoint}"),
                    verdict=v.verdict,
                    proto=facts.proto,
                    endpoint=self.endpoint,
                ),
                [ev_rule(text, v), ev_packet(text, v)],
                fix_allow(
                    text, v, direction="out", proto=facts.proto, port=facts.port, peer=None, dst=facts.address or facts.target
                ),
            )
        )

    def probe(self) -> None:
        facts, text = self.facts, self.text
        p = facts.probe
        if p is None:
            if not self.unknown_check("probe"):
                why = (
                    text(N_("skipped: no route"))
                    if facts.route and facts.route.kind == "none"
                    else text(N_("no probe was sent"))
                )
                self.add_check("probe", "skipped", why)
            return
        status = {"open": "pass", "open|filtered": "unknown"}.get(p.state, "fail")
        self.add_check("probe", status, ev_probe(text, p))
        if facts.other_family is not None:
            self.add_check(
                "probe_other_family",
                {"open": "pass"}.get(facts.other_family.state, "fail"),
                ev_probe(text, facts.other_family),
            )

    def trace(self) -> None:
        facts, text = self.facts, self.text
        t = facts.trace
        if t is None:
            if not self.unknown_check("trace"):
                self.add_check("trace", "skipped", text(N_("not needed")))
            return
        lines = ev_trace(text, t)
        self.add_check("trace", "pass" if t.reached else "fail", lines[-1])

    def conntrack(self) -> None:
        facts, text = self.facts, self.text
        flows = current_flows(facts)
        if flows:
            c = flows[0]
            self.add_check(
                "conntrack",
                "pass",
                text(
                    N_("conntrack: {original} became {translated}"),
                    original=c.original,
                    translated=c.translated,
                ),
            )
        elif facts.conntrack:
            c = facts.conntrack[0]  # translated as the rules no longer translate: history
            self.add_check(
                "conntrack",
                "skipped",
                text(
                    N_("only earlier flows in conntrack (history): {original} became {translated}"),
                    original=c.original,
                    translated=c.translated,
                ),
            )
        elif not self.unknown_check("conntrack"):
            self.add_check("conntrack", "skipped", text(N_("no translated flow in conntrack")))
