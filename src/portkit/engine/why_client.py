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
    N_,
    NO_WAY,
    PROHIBITED,
    Steps,
    ev_probe,
    ev_trace,
    finding,
)
from portkit.model.diagnosis import (
    Code,
    Localizable,
    Stage,
)

__all__ = ["ClientSteps"]


class ClientSteps(Steps):
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
                    T(
                        N_("the other address family fails: {probe}"),
                        probe=ev_probe(T, f.other_family).english(),
                    )
                )
            return
        if f.local_target or "server" in f.roles:
            return  # a probe of our own address: the server checks say more than the loopback path does
        evidence: list[Localizable] = [ev_probe(T, p)]
        if f.trace is not None:
            evidence.extend(ev_trace(T, f.trace))
            if any(h.address == p.address and h.kind == "time-exceeded" for h in f.trace.hops):
                # The target's own address sent time-exceeded: it routes the port onwards (a DNAT).
                evidence.append(
                    T(
                        N_(
                            "{address} forwards this port to another host (it answered time-exceeded): run portkit why there"
                        ),
                        address=p.address,
                    )
                )
        if f.other_family is not None and f.other_family.state == "open":
            evidence.append(
                T(N_("the other address family works: {probe}"), probe=ev_probe(T, f.other_family).english())
            )
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
                        N_(
                            "on {address}, start the service on port {port} (portkit why {endpoint} there names the cause)"
                        ),
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
                            N_(
                                "on {sender}, run portkit why {endpoint}/{proto} --from {client} to see the rule"
                            ),
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
                    T(
                        N_("{sender} reports {reason}: it cannot deliver to {address}"),
                        sender=sender,
                        reason=p.reason,
                        address=p.address,
                    ),
                    evidence,
                    T(
                        N_("check the routes on {sender} and that {address} is up"),
                        sender=sender,
                        address=p.address,
                    ),
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
                        N_(
                            "look at the forward rules of {hop} and the firewall of the next host: run portkit why {endpoint}/{proto} --from {client} there"
                        ),
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
                        N_(
                            "run portkit why {endpoint}/{proto} --from {client} on {address} (and on the routers between)"
                        ),
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
                T(
                    N_(
                        "no reply and no ICMP error: a UDP service may stay silent, or something drops the datagram"
                    )
                )
            )
        self.required.append("probe")

    # ------------------------------------------------------------------ server
