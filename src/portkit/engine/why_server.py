"""`portkit why` on the server: the input hook for the client's packet, and the socket table.

Theory of operation: the packet meets the input hook first, then the socket lookup, so an
inbound drop/reject is reported before a missing listener. A listener "covers" the target
when bound to it, to 0.0.0.0 (IPv4), or to :: (IPv6, and IPv4 too: Linux's bindv6only=0).
Nothing bound at all is NOT_LISTENING; only loopback binds for a non-loopback target is
LOOPBACK_ONLY; binds to other addresses are BOUND_TO_OTHER_ADDRESS. The same judgement
serves a DNAT target on this host (engine/why_router.py), where any miss is
FORWARD_TARGET_NOT_LISTENING and the listeners nearby name the port the forward should use.
"""

from __future__ import annotations

import ipaddress

from portkit.engine.findings import (
    ReasoningState,
    ev_listener,
    ev_packet,
    ev_rule,
    finding,
    fix_allow,
    hostport,
    is_loopback,
    l3,
)
from portkit.model.diagnosis import (
    Code,
    ForwardPath,
    Listener,
    Stage,
)
from portkit.model.text import N_, Localizable

__all__ = ["ServerSteps", "listener_covers"]


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


class ServerSteps(ReasoningState):
    def inbound(self) -> None:
        facts, text = self.facts, self.text
        self.required.append("inbound")
        v = facts.inbound
        if v is None:
            if not self.unknown_check("inbound"):
                self.add_check("inbound", "unknown", text(N_("the inbound rules were not evaluated")))
            return
        if v.verdict == "accept":
            if v.where:
                self.add_check(
                    "inbound",
                    "pass",
                    text(N_("the inbound rules accept {packet} ({where})"), packet=v.packet, where=v.where),
                )
            else:
                self.add_check(
                    "inbound", "pass", text(N_("nothing filters {packet} (no input chain)"), packet=v.packet)
                )
            return
        self.add_check(
            "inbound",
            "fail",
            text(
                N_("the inbound rules {verdict} {packet} ({where})"),
                verdict=v.verdict,
                packet=v.packet,
                where=v.where,
            ),
        )
        code = Code.FIREWALL_INBOUND_REJECT if v.verdict == "reject" else Code.FIREWALL_INBOUND_DROP
        message = (
            text(
                N_("the inbound rules reject {proto} port {port} from {client}"),
                proto=facts.proto,
                port=facts.port,
                client=facts.client or "outside",
            )
            if v.verdict == "reject"
            else text(
                N_("the inbound rules drop {proto} port {port} from {client}"),
                proto=facts.proto,
                port=facts.port,
                client=facts.client or "outside",
            )
        )
        self.findings.append(
            finding(
                code,
                Stage.SERVER,
                message,
                [ev_rule(text, v), ev_packet(text, v)],
                fix_allow(
                    text, v, direction="in", proto=facts.proto, port=facts.port, peer=facts.client, dst=facts.address or facts.target
                ),
            )
        )

    def listen(self) -> None:
        facts, text = self.facts, self.text
        self.required.append("listen")
        if facts.listeners is None:
            if not self.unknown_check("listen"):
                self.add_check("listen", "unknown", text(N_("the socket table was not read")))
            return
        address = facts.address or facts.target
        code, message, fix = self.judge_listeners(facts.listeners, address, facts.port, forward=None)
        if code is None:
            s = next(s for s in facts.listeners if listener_covers(s.address, address))
            self.add_check("listen", "pass", ev_listener(text, s))
            return
        self.add_check("listen", "fail", message)
        evidence = [ev_listener(text, s) for s in facts.listeners] or [
            text(N_("socket table: no {proto} socket is bound to port {port}"), proto=facts.proto, port=facts.port)
        ]
        self.findings.append(finding(code, Stage.SERVER, message, evidence, fix))

    def judge_listeners(
        self, listeners: tuple[Listener, ...], address: str, port: int, *, forward: ForwardPath | None
    ) -> tuple[Code | None, Localizable, Localizable | None]:
        """NOT_LISTENING / LOOPBACK_ONLY / BOUND_TO_OTHER_ADDRESS, or None when a socket takes it."""
        text, proto = self.text, self.facts.proto
        if any(listener_covers(s.address, address) for s in listeners):
            return None, text(N_("listening")), None
        if not listeners:
            if forward is not None and forward.dnat is not None:
                near = ", ".join(f"{s.port} ({s.process or '?'})" for s in forward.nearby[:5])
                msg = text(
                    N_("the forward of port {port} points at {target}, but nothing listens there"),
                    port=self.facts.port,
                    target=hostport(address, port),
                )
                if forward.nearby:
                    closest = min(forward.nearby, key=lambda s: abs(s.port - port))
                    fix = text(
                        N_(
                            "forward {port} points at {to_port} but the service listens on {actual}: change the forward to {actual}, or move the service to {to_port}"
                        ),
                        port=self.facts.port,
                        to_port=port,
                        actual=closest.port,
                    )
                    msg = text(
                        N_(
                            "the forward of port {port} points at {target}, but nothing listens there (listening nearby: {near})"
                        ),
                        port=self.facts.port,
                        target=hostport(address, port),
                        near=near,
                    )
                else:
                    fix = text(
                        N_("start the service on {target}, or point the forward at the port it listens on"),
                        target=hostport(address, port),
                    )
                return Code.FORWARD_TARGET_NOT_LISTENING, msg, fix
            return (
                Code.NOT_LISTENING,
                text(N_("nothing listens on {proto} port {port} on this host"), proto=proto, port=port),
                text(N_("start the service on port {port} (or check the port in its configuration)"), port=port),
            )
        held = ", ".join(sorted({hostport(s.address, s.port) for s in listeners}))
        proc = next((s.process for s in listeners if s.process), None)
        wildcard = "::" if l3(address) == "ip6" else "0.0.0.0"
        params = {"held": held, "address": address, "wildcard": wildcard, "process": proc}
        # Without root the owner of a socket may be invisible: the sentences then say "a service".
        if proc:
            fix = text(
                N_("bind to {wildcard} or {address} instead of {held} (in {process}'s configuration)"),
                **params,
            )
        else:
            fix = text(
                N_("bind to {wildcard} or {address} instead of {held} (in the service's configuration)"),
                **params,
            )
        if all(is_loopback(s.address) for s in listeners) and not is_loopback(address):
            if proc:
                msg = text(
                    N_(
                        "{process} listens on {held} only (loopback): connections to {address} cannot reach it"
                    ),
                    **params,
                )
            else:
                msg = text(
                    N_(
                        "a service listens on {held} only (loopback): connections to {address} cannot reach it"
                    ),
                    **params,
                )
            return Code.LOOPBACK_ONLY, msg, fix
        if proc:
            msg = text(N_("{process} listens on {held}, not on {address}"), **params)
        else:
            msg = text(N_("a service listens on {held}, not on {address}"), **params)
        return Code.BOUND_TO_OTHER_ADDRESS, msg, fix

    # ------------------------------------------------------------------ router
