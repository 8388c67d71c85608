"""`portkit why` on the client: what the probe (and the trace) say, once this host's rules are known.

Theory of operation: observation first. An open probe is REACHABLE. A reset or an ICMP
port-unreachable from the target is NOT_LISTENING (a reject-with-reset rule looks the same
from outside, and the evidence says so). ICMP prohibited from the target itself is the
server's inbound reject; from anyone else, a router filtering on the path. net/host
unreachable is a routing failure on the path. Silence is FILTERED_ON_PATH only when this
host's own outbound rules are known to accept the packet — then something outside drops it,
and the trace names the last hop that answered; when they are not known, it is UNKNOWN.
"""

from __future__ import annotations

from portkit.engine.findings import (
    CLOSED_REASONS,
    NO_WAY,
    PROHIBITED,
    ReasoningState,
    ev_probe,
    ev_trace,
    finding,
)
from portkit.model.diagnosis import (
    Code,
    Stage,
)
from portkit.model.text import N_, Localizable

__all__ = ["ClientSteps"]


class ClientSteps(ReasoningState):
    def client_conclusion(self) -> None:
        """What the probe says, once the client's own facts are known."""
        facts, text = self.facts, self.text
        p = facts.probe
        if p is None:
            if facts.route is None or facts.route.kind != "none":
                self.required.append("probe")
            return
        if p.state == "open":
            self.required.append("probe")
            if facts.other_family is not None and facts.other_family.state != "open":
                self.extra_evidence.append(
                    text(
                        N_("the other address family fails: {probe}"),
                        probe=ev_probe(text, facts.other_family).english(),
                    )
                )
            return
        if facts.local_target or "server" in facts.roles:
            return  # a probe of our own address: the server checks say more than the loopback path does
        evidence: list[Localizable] = [ev_probe(text, p)]
        if facts.trace is not None:
            evidence.extend(ev_trace(text, facts.trace))
            if any(h.address == p.address and h.kind == "time-exceeded" for h in facts.trace.hops):
                # The target's own address sent time-exceeded: it routes the port onwards (a DNAT).
                evidence.append(
                    text(
                        N_(
                            "{address} forwards this port to another host (it answered time-exceeded): "
                            "run portkit why {endpoint}/{proto} --from {client} there"
                        ),
                        address=p.address,
                        endpoint=self.endpoint,
                        proto=facts.proto,
                        client=facts.client or "CLIENT",
                    )
                )
        if facts.other_family is not None and facts.other_family.state == "open":
            evidence.append(
                text(N_("the other address family works: {probe}"), probe=ev_probe(text, facts.other_family).english())
            )
        sender = p.reason_from or p.address
        if any(x.code == Code.FIREWALL_OUTBOUND for x in self.findings):
            return  # the outbound drop explains the failed probe already
        if p.state == "closed" or p.reason in CLOSED_REASONS:
            self.findings.append(
                finding(
                    Code.NOT_LISTENING,
                    Stage.SERVER,
                    text(
                        N_("{address} answers, but nothing accepts {proto} port {port} there ({reason})"),
                        address=p.address,
                        proto=facts.proto,
                        port=facts.port,
                        reason=p.reason,
                    ),
                    [*evidence, text(N_("a reset can also come from a rule that rejects with tcp reset"))]
                    if p.reason == "conn-refused" or p.reason == "reset"
                    else evidence,
                    text(
                        N_(
                            "a refusal seen from here cannot tell apart: nothing listens on {port}, the service is "
                            "bound to another address, a DNAT sends the port elsewhere, or a rule rejects with "
                            "tcp reset; on {address}, run portkit why {endpoint}/{proto} --from {client} to tell which"
                        ),
                        address=p.address,
                        port=facts.port,
                        endpoint=self.endpoint,
                        proto=facts.proto,
                        client=facts.client or "CLIENT",
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
                        text(
                            N_("{address} rejects {proto} port {port} with ICMP {reason}"),
                            address=p.address,
                            proto=facts.proto,
                            port=facts.port,
                            reason=p.reason,
                        ),
                        evidence,
                        text(
                            N_(
                                "on {address}, run portkit why {endpoint}/{proto} --from {client}: it names the table "
                                "that rejects and the command that changes it"
                            ),
                            address=p.address,
                            endpoint=self.endpoint,
                            proto=facts.proto,
                            client=facts.client or "CLIENT",
                        ),
                    )
                )
            else:
                self.findings.append(
                    finding(
                        Code.FILTERED_ON_PATH,
                        Stage.PATH,
                        text(
                            N_("the router {sender} rejects the packet on the way (ICMP {reason})"),
                            sender=sender,
                            reason=p.reason,
                        ),
                        evidence,
                        text(
                            N_(
                                "on {sender}, run portkit why {endpoint}/{proto} --from {client} to see the rule"
                            ),
                            sender=sender,
                            endpoint=self.endpoint,
                            proto=facts.proto,
                            client=facts.client or "CLIENT",
                        ),
                    )
                )
            return
        if p.reason in NO_WAY:
            self.findings.append(
                finding(
                    Code.NO_ROUTE,
                    Stage.PATH,
                    text(
                        N_("{sender} reports {reason}: it cannot deliver to {address}"),
                        sender=sender,
                        reason=p.reason,
                        address=p.address,
                    ),
                    evidence,
                    text(
                        N_("check the routes on {sender} and that {address} is up"),
                        sender=sender,
                        address=p.address,
                    ),
                )
            )
            return
        if p.reason == "no-response" and p.state == "filtered":
            if self.status_of("outbound") == "pass":
                last = facts.trace.last_hop if facts.trace else None
                ttl = facts.trace.last_hop_ttl if facts.trace else None
                if last is not None:
                    msg = text(
                        N_(
                            "the rules on this host accept {proto} to {endpoint}, but the probe gets no answer: "
                            "something outside this host drops it after hop {ttl} ({hop})"
                        ),
                        proto=facts.proto,
                        endpoint=self.endpoint,
                        ttl=ttl or 0,
                        hop=last,
                    )
                    fix = text(
                        N_(
                            "look at the forward rules of {hop} and the firewall of the next host: run portkit why {endpoint}/{proto} --from {client} there"
                        ),
                        hop=last,
                        endpoint=self.endpoint,
                        proto=facts.proto,
                        client=facts.client or "CLIENT",
                        address=p.address,
                    )
                else:
                    msg = text(
                        N_(
                            "the rules on this host accept {proto} to {endpoint}, but the probe gets no answer: "
                            "something outside this host drops it"
                        ),
                        proto=facts.proto,
                        endpoint=self.endpoint,
                    )
                    fix = text(
                        N_(
                            "run portkit why {endpoint}/{proto} --from {client} on {address} (and on the routers between)"
                        ),
                        endpoint=self.endpoint,
                        proto=facts.proto,
                        client=facts.client or "CLIENT",
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
                text(
                    N_(
                        "no reply and no ICMP error: a UDP service may stay silent, or something drops the datagram"
                    )
                )
            )
        self.required.append("probe")

    # ------------------------------------------------------------------ server
