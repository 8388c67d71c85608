"""Firewall facts for `portkit why`: the live ruleset read once, verdicts turned into RuleVerdicts.

Every verdict comes from the firewall engineer's evaluator (``ops.firewall.check_packet``)
on one ruleset read (``live_ruleset``) and this host's addresses, so one `why` costs one
``nft -j list ruleset``. What could not be had (no CAP_NET_ADMIN, an expression the
evaluator cannot judge) is recorded as an :class:`~portkit.model.diagnosis.Unknown` with
the reason, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from portkit.errors import PortkitError
from portkit.model.diagnosis import DnatFact, RuleVerdict, Unknown

__all__ = ["Firewall", "Gathering", "dnat_of", "packet_text", "verdict_of", "why_unknown"]

Answer = TypeVar("Answer")


@dataclass(slots=True)
class Gathering:
    """Mutable accumulator while gathering; frozen into Facts at the end."""

    unknowns: list[Unknown] = field(default_factory=list)

    def attempt(self, what: str, fn: Callable[[], Answer]) -> Answer | None:
        """Run ``fn``; on failure record why ``what`` could not be determined."""
        try:
            return fn()
        except (ImportError, AttributeError, NotImplementedError) as exc:
            self.unknowns.append(Unknown(what, f"not available in this portkit build ({exc})"))
        except PortkitError as exc:
            self.unknowns.append(Unknown(what, str(exc)))
        except OSError as exc:  # a fact that cannot be gathered is an unknown, not an error
            self.unknowns.append(Unknown(what, exc.strerror or str(exc)))
        return None


def verdict_of(result: Any, hook: str, packet: str) -> RuleVerdict | None:
    """An FwCheckResult (ops.firewall) -> RuleVerdict; None when the verdict is unknown."""
    verdict = str(getattr(result, "verdict", "unknown"))
    if verdict not in ("accept", "drop", "reject"):
        return None
    d = getattr(result, "decided_by", None)
    family = table = chain = rule = None
    handle: int | None = None
    if d is not None:
        family, _, table = str(d.table).rpartition(" ")
        chain, handle, rule = d.chain, d.handle, d.rule
    return RuleVerdict(hook, verdict, rule, packet, table or None, chain, handle, family or None)


def packet_text(
    proto: str, src: str, dst: str, port: int, iif: str | None = None, oif: str | None = None
) -> str:
    host = f"[{dst}]" if ":" in dst else dst
    text = f"{proto} {src} -> {host}:{port}"
    if iif:
        text += f" iif {iif}"
    if oif:
        text += f" oif {oif}"
    return text


class Firewall:
    """The live ruleset, read once, and this host's addresses: every verdict is evaluated on them."""

    def __init__(self, gathering: Gathering) -> None:
        self.gathering = gathering
        self.ruleset: Any = None
        self.error: str | None = None
        self.local: frozenset[Any] = frozenset()
        try:
            from portkit.ops.firewall import live_ruleset

            self.ruleset = live_ruleset()
            self.local = local_addresses()
        except (ImportError, AttributeError) as exc:
            self.error = f"the firewall evaluator is not available in this portkit build ({exc})"
        except PortkitError as exc:
            self.error = str(exc)
        except OSError as exc:  # the evaluator is unavailable: said in the report, not raised
            self.error = exc.strerror or str(exc)

    def check(self, what: str, **kw: Any) -> Any:
        """An FwCheckResult, or None (recorded as unknown ``what``)."""
        if self.error is not None:
            self.gathering.unknowns.append(Unknown(what, self.error))
            return None
        from portkit.ops.firewall import check_packet

        rs = kw.pop("ruleset", self.ruleset)
        return self.gathering.attempt(what, lambda: check_packet(ruleset=rs, local_addresses=self.local, **kw))

    def verdict(self, res: Any, hook: str, packet: str) -> RuleVerdict | None:
        """RuleVerdict of a result; an accept "decided" by a nat chain's policy means no filter chain."""
        v = verdict_of(res, hook, packet)
        if v is None or v.verdict != "accept" or self.ruleset is None or v.chain is None:
            return v
        for c in self.ruleset.chains:
            if c.name == v.chain and c.table == v.table and (v.family is None or c.family == v.family):
                if c.type == "nat":
                    return RuleVerdict(hook, "accept", None, packet)
                break
        return v

    def without_nat(self) -> Any:
        rs = self.ruleset
        return type(rs)(
            chains=tuple(c for c in rs.chains if c.type != "nat"),
            sets=rs.sets,
            tables=rs.tables,
            notes=rs.notes,
        )


def local_addresses() -> frozenset[Any]:
    from portkit.backends.host import local_addresses as host_addresses

    return host_addresses()


def dnat_of(res: Any, address: str, port: int) -> DnatFact | None:
    """The DNAT an evaluation went through, when it changed the destination."""
    td = getattr(res, "translated_destination", None)
    if td is None:
        return None
    to_addr = str(td.address) if td.address not in (None, "", "(local)") else address
    to_port = int(td.port) if td.port is not None else port
    if to_addr == address and to_port == port:
        return None
    rule = None
    for step in getattr(res, "trace", ()) or ():
        if step.result in ("dnat", "redirect"):  # not "ct status dnat masquerade"
            rule = f"table {step.table} chain {step.chain}: {step.rule}"
    return DnatFact(rule or f"dnat to {to_addr}:{to_port}", to_addr, to_port)


def why_unknown(res: Any) -> str:
    return str(getattr(res, "reason", None) or "the firewall evaluator could not decide")
