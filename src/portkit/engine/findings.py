"""The words of `portkit why`: how findings, evidence and checks are put into sentences.

Theory of operation: the reasoning in :mod:`portkit.engine.diagnosis` decides *what* is
wrong; this module only turns a decision plus its facts into translatable text. Every
template is marked with :func:`N_` (gettext's no-op marker, extracted by the catalog test)
and instantiated through a :data:`MessageFactory` — in production ``portkit.i18n.Message``,
injected by the caller because engine/ stays free of upper layers. The English rendering
goes to JSON; the renderer shows the same message in the user's language.

Evidence lines quote the system verbatim (rule text, socket, probe, trace hop); only the
words around the quotes are translated.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from portkit.engine.fixes import allow_command
from portkit.model.diagnosis import (
    Check,
    Facts,
    Finding,
    Listener,
    ProbeFact,
    RouteFact,
    RuleVerdict,
    Stage,
    Unknown,
)
from portkit.model.text import N_, Localizable
from portkit.model.trace import TraceResult

MessageFactory = Callable[[str, Mapping[str, Any]], Localizable]

PROHIBITED = ("admin-prohibited", "host-prohibited", "net-prohibited")
NO_WAY = ("net-unreach", "host-unreach")
CLOSED_REASONS = ("conn-refused", "reset", "port-unreach")


class Texts:
    """``T(template, **params)`` -> a Localizable built by the injected factory.

    A template not marked with N_ is not translated: that is how pasteable commands are
    built (the text is final, so it has no placeholders left: braces are escaped).
    """

    def __init__(self, make: MessageFactory) -> None:
        self._make = make

    def __call__(self, template: str, **params: Any) -> Localizable:
        if not params:
            template = template.replace("{", "{{").replace("}", "}}")
        return self._make(template, params)


def finding(
    code: str,
    stage: Stage,
    message: Localizable,
    evidence: Sequence[Localizable] = (),
    fix: Localizable | None = None,
    *,
    blocking: bool = True,
) -> Finding:
    return Finding(
        code=code,
        message=message.english(),
        evidence=tuple(e.english() for e in evidence),
        fix=fix.english() if fix is not None else None,
        stage=stage.value,
        blocking=blocking,
        message_text=message,
        evidence_text=tuple(evidence),
        fix_text=fix,
    )


def check(name: str, status: str, detail: Localizable) -> Check:
    return Check(name=name, status=status, detail=detail.english(), detail_text=detail)


# --------------------------------------------------------------------------- small formatters


def hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def l3(address: str) -> str:
    """nft's address keyword for an address: ``ip`` or ``ip6``."""
    try:
        return "ip6" if ipaddress.ip_address(address).version == 6 else "ip"
    except ValueError:
        return "ip"


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# --------------------------------------------------------------------------- evidence


def ev_rule(T: Texts, v: RuleVerdict) -> Localizable:
    if not v.where and not v.rule:
        if v.hook == "in":
            return T(N_("inbound: no input chain, nothing filters the packet"))
        if v.hook == "out":
            return T(N_("outbound: no output chain, nothing filters the packet"))
        return T(N_("forward: no forward chain, nothing filters the packet"))
    where = v.where or "?"
    rule = v.rule or v.verdict
    if v.hook == "in":
        return T(N_("inbound rule ({where}): {rule}"), where=where, rule=rule)
    if v.hook == "out":
        return T(N_("outbound rule ({where}): {rule}"), where=where, rule=rule)
    return T(N_("forward rule ({where}): {rule}"), where=where, rule=rule)


def ev_packet(T: Texts, v: RuleVerdict) -> Localizable:
    return T(N_("packet evaluated: {packet}"), packet=v.packet)


def ev_listener(T: Texts, s: Listener) -> Localizable:
    if s.process:
        return T(
            N_("socket: {proto} {endpoint} held by {process} (pid {pid})"),
            proto=s.proto,
            endpoint=hostport(s.address, s.port),
            process=s.process,
            pid=s.pid if s.pid is not None else "?",
        )
    return T(
        N_("socket: {proto} {endpoint} (process not visible)"),
        proto=s.proto,
        endpoint=hostport(s.address, s.port),
    )


def ev_probe(T: Texts, p: ProbeFact) -> Localizable:
    params = {
        "endpoint": hostport(p.address, p.port),
        "proto": p.proto,
        "state": p.state,
        "reason": p.reason,
        "vantage": p.vantage,
    }
    if p.reason_from:
        return T(
            N_("probe from {vantage}: {endpoint}/{proto} {state} ({reason} from {sender})"),
            sender=p.reason_from,
            **params,
        )
    return T(N_("probe from {vantage}: {endpoint}/{proto} {state} ({reason})"), **params)


def ev_route(T: Texts, r: RouteFact) -> Localizable:
    if r.kind == "none":
        return T(
            N_("ip route get {destination}: {error}"), destination=r.destination, error=r.error or "no route"
        )
    if r.kind == "local":
        return T(N_("ip route get {destination}: local (this host's address)"), destination=r.destination)
    if r.gateway:
        return T(
            N_("ip route get {destination}: via {gateway} dev {dev} src {source}"),
            destination=r.destination,
            gateway=r.gateway,
            dev=r.dev or "?",
            source=r.source or "?",
        )
    return T(
        N_("ip route get {destination}: dev {dev} src {source} (directly connected)"),
        destination=r.destination,
        dev=r.dev or "?",
        source=r.source or "?",
    )


def ev_trace(T: Texts, t: TraceResult) -> list[Localizable]:
    out: list[Localizable] = []
    last = t.last_hop_ttl or 0
    for h in t.hops:
        if h.ttl > last and not t.reached:
            break  # the silent tail is summed up by the last line
        if h.address is None:
            out.append(T(N_("trace hop {ttl}: no answer"), ttl=h.ttl))
        else:
            out.append(
                T(N_("trace hop {ttl}: {address} {rtt} ms"), ttl=h.ttl, address=h.address, rtt=ms(h.rtt_ms))
            )
    if t.reached:
        out.append(T(N_("trace: the destination answered ({state})"), state=t.state))
    elif t.last_hop is not None:
        out.append(
            T(
                N_("trace: the probes die after hop {ttl} ({address})"),
                ttl=t.last_hop_ttl or 0,
                address=t.last_hop,
            )
        )
    else:
        out.append(T(N_("trace: no hop answered")))
    return out


def ev_unknown(T: Texts, u: Unknown) -> Localizable:
    return T(N_("{what} could not be determined: {reason}"), what=u.what, reason=u.reason)


# --------------------------------------------------------------------------- fixes


def fix_allow(
    T: Texts, v: RuleVerdict, *, direction: str, proto: str, port: int, peer: str | None, dst: str
) -> Localizable:
    """A pasteable change that lets the packet through the rule set that blocked it.

    The command is in the language of the table's owner (see :mod:`portkit.engine.fixes`):
    ``portkit fw`` for portkit's policy, ``ufw``, ``firewall-cmd``, ``iptables`` (Docker's
    ``DOCKER-USER``) or ``nft insert rule``; several lines are joined with `` ; ``.
    """
    lines = allow_command(v, direction=direction, proto=proto, port=port, peer=peer, dst=dst)
    if lines is None:
        return T(N_("allow {proto} port {port} in {where}"), proto=proto, port=port, where=v.where or v.hook)
    return T(" ; ".join(lines))


# --------------------------------------------------------------------------- reasoning state


class ReasoningState:
    """State shared by the reasoning steps: the facts, the text factory, checks and findings."""

    def __init__(self, facts: Facts, text: Texts) -> None:
        self.facts = facts
        self.text = text
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
        u = self.facts.unknown(name)
        if u is None:
            return False
        self.add_check(name, "unknown", ev_unknown(self.text, u))
        return True

    @property
    def endpoint(self) -> str:
        return hostport(self.facts.address or self.facts.target, self.facts.port)

    # ------------------------------------------------------------------ main
