"""`portkit why` on a router: the DNAT that matches, the forward hook, the translated destination.

Theory of operation: a packet for a forwarded port is rewritten in prerouting and then
routed: to forward (another host) or to input (a DNAT to this host itself). The forward
verdict comes first (FIREWALL_FORWARD); then the destination beyond: no route or no answer
is FORWARD_TARGET_UNREACHABLE, a refusal FORWARD_TARGET_NOT_LISTENING. When the input hook
would refuse the original port but the forward path works, the port is exposed anyway —
EXPOSED_DESPITE_INBOUND_DENY, a warning that does not block (Docker's published ports
bypassing ufw are the classic case).
"""

from __future__ import annotations

from portkit.engine.findings import (
    CLOSED_REASONS,
    ev_listener,
    ev_packet,
    ev_probe,
    ev_route,
    ev_rule,
    finding,
    fix_allow,
    hostport,
    l3,
)
from portkit.engine.why_flows import current_flows
from portkit.engine.why_server import ServerSteps, listener_covers
from portkit.model.diagnosis import (
    Code,
    ForwardPath,
    Stage,
)
from portkit.model.text import N_, Localizable

__all__ = ["RouterSteps"]


class RouterSteps(ServerSteps):
    def forward_path(self, fp: ForwardPath) -> None:
        facts, text = self.facts, self.text
        evidence: list[Localizable] = []
        target = hostport(fp.destination, fp.port)
        if fp.dnat is not None:
            dnat_ev = text(N_("DNAT rule: {rule}"), rule=fp.dnat.rule)
            evidence.append(dnat_ev)
            self.add_check(
                "dnat",
                "pass",
                text(
                    N_("{port} is forwarded to {target} by {rule}"),
                    port=facts.port,
                    target=target,
                    rule=fp.dnat.rule,
                ),
            )
            if facts.inbound is not None:
                # Informational: what the input hook would say without the DNAT (the Docker trap).
                self.add_check(
                    "inbound",
                    "pass" if facts.inbound.verdict == "accept" else "fail",
                    text(
                        N_("without the DNAT, the inbound rules would {verdict} {packet}"),
                        verdict=facts.inbound.verdict,
                        packet=facts.inbound.packet,
                    ),
                )
        elif not self.unknown_check("dnat"):
            self.add_check(
                "dnat",
                "skipped",
                text(N_("no DNAT rule matches; the packet is routed to {target}"), target=target),
            )
        for c in current_flows(facts):  # stale flows (an older translation) are history
            evidence.append(
                text(
                    N_("conntrack: {original} became {translated}"),
                    original=c.original,
                    translated=c.translated,
                )
            )
        # 1. the forward hook (not for a DNAT to this host itself: that goes through input)
        if not fp.target_local:
            self.required.append("forward")
            v = fp.forward
            if v is None:
                if not self.unknown_check("forward"):
                    self.add_check("forward", "unknown", text(N_("the forward rules were not evaluated")))
                return
            if v.verdict != "accept":
                self.add_check(
                    "forward",
                    "fail",
                    text(
                        N_("the forward rules {verdict} {packet} ({where})"),
                        verdict=v.verdict,
                        packet=v.packet,
                        where=v.where,
                    ),
                )
                self.findings.append(
                    finding(
                        Code.FIREWALL_FORWARD,
                        Stage.ROUTER,
                        text(
                            N_("this router's forward rules {verdict} {proto} to {target}"),
                            verdict=v.verdict,
                            proto=facts.proto,
                            target=target,
                        ),
                        [*evidence, ev_rule(text, v), ev_packet(text, v)],
                        fix_allow(
                            text,
                            v,
                            direction="forward",
                            proto=facts.proto,
                            port=fp.port,
                            peer=facts.client,
                            dst=fp.destination,
                        ),
                    )
                )
                return
            if v.where:
                self.add_check(
                    "forward",
                    "pass",
                    text(N_("the forward rules accept {packet} ({where})"), packet=v.packet, where=v.where),
                )
            else:
                self.add_check(
                    "forward", "pass", text(N_("nothing filters {packet} (no forward chain)"), packet=v.packet)
                )
            evidence.append(ev_rule(text, v))
        # 2. the destination beyond the router
        self.required.append("forward_target")
        dead = self.forward_target(fp, evidence)
        # 3. the Docker trap: the input hook would refuse the port, the DNAT publishes it anyway
        inbound = facts.inbound
        if (
            fp.dnat is not None
            and not fp.target_local
            and inbound is not None
            and inbound.verdict in ("drop", "reject")
            and not dead
        ):
            fam, table, chain = (
                (fp.forward.family or "inet", fp.forward.table, fp.forward.chain)
                if fp.forward
                else ("inet", None, None)
            )
            self.findings.append(
                finding(
                    Code.EXPOSED_DESPITE_INBOUND_DENY,
                    Stage.ROUTER,
                    text(
                        N_(
                            "port {port} is reachable through the DNAT to {target} although the inbound rules {verdict} it: "
                            "forwarded packets never pass the input hook"
                        ),
                        port=facts.port,
                        target=target,
                        verdict=inbound.verdict,
                    ),
                    [*evidence, ev_rule(text, inbound)],
                    text(
                        N_(
                            "filter it where forwarded packets pass: nft insert rule {family} {table} {chain} {l3} daddr {address} {proto} dport {to_port} ct status dnat drop (Docker: the DOCKER-USER chain), or publish on 127.0.0.1 only"
                        ),
                        family=fam,
                        table=table or "TABLE",
                        chain=chain or "FORWARD_CHAIN",
                        l3=l3(fp.destination),
                        address=fp.destination,
                        proto=facts.proto,
                        to_port=fp.port,
                    ),
                    blocking=False,
                )
            )

    def forward_target(self, fp: ForwardPath, evidence: list[Localizable]) -> bool:
        """Check the translated destination; True when it is known not to work."""
        facts, text = self.facts, self.text
        target = hostport(fp.destination, fp.port)
        if fp.target_local:
            if fp.listeners is None:
                if not self.unknown_check("forward_target"):
                    self.add_check("forward_target", "unknown", text(N_("the socket table was not read")))
                return False
            code, message, fix = self.judge_listeners(fp.listeners, fp.destination, fp.port, forward=fp)
            if code is None:
                s = next(s for s in fp.listeners if listener_covers(s.address, fp.destination))
                self.add_check("forward_target", "pass", ev_listener(text, s))
                evidence.append(ev_listener(text, s))
                return False
            if code is not Code.FORWARD_TARGET_NOT_LISTENING and fp.dnat is not None:
                code = Code.FORWARD_TARGET_NOT_LISTENING
            self.add_check("forward_target", "fail", message)
            self.findings.append(
                finding(
                    code, Stage.SERVER, message, [*evidence, *(ev_listener(text, s) for s in fp.listeners)], fix
                )
            )
            return True
        if fp.route is not None and fp.route.kind == "none":
            self.add_check("forward_target", "fail", ev_route(text, fp.route))
            self.findings.append(
                finding(
                    Code.FORWARD_TARGET_UNREACHABLE,
                    Stage.ROUTER,
                    text(N_("this router has no route to the forward target {target}"), target=target),
                    [*evidence, ev_route(text, fp.route)],
                    text(
                        N_("add a route to {address} on this router, or fix the forward's target address"),
                        address=fp.destination,
                    ),
                )
            )
            return True
        p = fp.probe
        if p is None:
            if not self.unknown_check("forward_target"):
                self.add_check("forward_target", "unknown", text(N_("the forward target was not probed")))
            return False
        if p.state == "open":
            self.add_check("forward_target", "pass", ev_probe(text, p))
            evidence.append(ev_probe(text, p))
            return False
        if p.state == "closed" or p.reason in CLOSED_REASONS:
            self.add_check("forward_target", "fail", ev_probe(text, p))
            self.findings.append(
                finding(
                    Code.FORWARD_TARGET_NOT_LISTENING,
                    Stage.SERVER,
                    text(
                        N_(
                            "the forward of port {port} points at {target}, but nothing listens there ({reason})"
                        ),
                        port=facts.port,
                        target=target,
                        reason=p.reason,
                    ),
                    [*evidence, ev_probe(text, p)],
                    text(
                        N_(
                            "start the service on {target}, or point the forward at the port it listens on (portkit ls on {address} shows it)"
                        ),
                        target=target,
                        address=fp.destination,
                    ),
                )
            )
            return True
        if p.state == "open|filtered":
            self.add_check("forward_target", "unknown", ev_probe(text, p))
            return False
        self.add_check("forward_target", "fail", ev_probe(text, p))
        self.findings.append(
            finding(
                Code.FORWARD_TARGET_UNREACHABLE,
                Stage.ROUTER,
                text(
                    N_("the forward target {target} does not answer from this router ({reason})"),
                    target=target,
                    reason=p.reason if not p.reason_from else f"{p.reason} from {p.reason_from}",
                ),
                [*evidence, ev_probe(text, p)],
                text(
                    N_(
                        "check that {address} is up and that its firewall lets {proto} port {port} in "
                        "(portkit why {target}/{proto} --from {client} on {address})"
                    ),
                    client=facts.client or "CLIENT",
                    address=fp.destination,
                    proto=facts.proto,
                    port=fp.port,
                    target=target,
                ),
            )
        )
        return True

    # ------------------------------------------------------------------ conntrack
