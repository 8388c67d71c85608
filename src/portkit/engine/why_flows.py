"""Conntrack flows that belong to the current translation (issue 13, item 8).

A flow in conntrack records the translation it got when it started. After a DNAT changed
(``:2988`` -> ``:2989``), the old flows linger (TIME_WAIT) and show the old target: they are
history, not evidence that today's rule works. Only flows whose translated destination is
the one the current rules give are a check.
"""

from __future__ import annotations

from portkit.model.diagnosis import ConntrackFact, Facts


def _hostport(text: str) -> tuple[str, str]:
    dst = text.rpartition(" -> ")[2]
    host, _, port = dst.rpartition(":")
    return host.strip("[]"), port


def current_flows(facts: Facts) -> tuple[ConntrackFact, ...]:
    """The flows of ``facts.conntrack`` translated as the current DNAT translates (none without one)."""
    targets = [fp.dnat for fp in facts.forwards if fp.dnat is not None]
    out: list[ConntrackFact] = []
    for c in facts.conntrack:
        host, port = _hostport(c.translated)
        for d in targets:
            redirect = "redirect" in d.rule  # the kernel picks the incoming interface's address
            if port == str(d.to_port) and (redirect or host == d.to_address):
                out.append(c)
                break
    return tuple(out)


def stale_flows(facts: Facts) -> tuple[ConntrackFact, ...]:
    current = current_flows(facts)
    return tuple(c for c in facts.conntrack if c not in current)
