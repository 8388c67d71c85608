"""`portkit why` and `portkit trace` as a short story for people, or as JSON for scripts.

The story lists each check with a tick or a cross, then the verdict (the main finding)
with its evidence and the fix, then any further findings. Text comes from the findings'
translatable messages rendered with the user's translator; JSON always carries the
English text and the stable codes, whatever the language.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from portkit.i18n import Translator
from portkit.model.diagnosis import Diagnosis, Finding
from portkit.model.text import N_
from portkit.model.trace import TraceResult
from portkit.render.jsonout import document
from portkit.render.table import style

__all__ = ["trace_json", "trace_text", "why_json", "why_text"]

MARKS = {"pass": ("✓", "green"), "fail": ("✗", "red"), "unknown": ("?", "yellow"), "skipped": ("-", "dim")}

CHECK_LABELS = {
    "resolve": N_("name"),
    "route": N_("route"),
    "outbound": N_("outbound rules"),
    "probe": N_("probe"),
    "probe_other_family": N_("other family"),
    "trace": N_("trace"),
    "inbound": N_("inbound rules"),
    "listen": N_("listener"),
    "dnat": N_("port forward"),
    "forward": N_("forward rules"),
    "forward_target": N_("forward target"),
    "conntrack": N_("conntrack"),
}

ROLE_LABELS = {"client": N_("client"), "router": N_("router"), "server": N_("server")}


def width(text: str) -> int:
    """Terminal columns of ``text``: East Asian wide characters (Hangul) take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def pad(text: str, cols: int, *, right: bool = False) -> str:
    fill = " " * max(0, cols - width(text))
    return fill + text if right else text + fill


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], color: bool, right: Sequence[int] = ()
) -> str:
    """A small aligned table that counts display columns (render_table counts characters)."""
    cols = [max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(pad(c, cols[i], right=i in right) for i, c in enumerate(cells)).rstrip()

    return "\n".join([style(line(headers), "bold", color), *(line(r) for r in rows)])


def why_json(d: Diagnosis) -> dict[str, Any]:
    return document(
        target=d.target,
        address=d.address,
        port=d.port,
        proto=d.proto,
        reachable=d.reachable,
        findings=d.findings,
        checks=d.checks,
    )


def _finding_lines(f: Finding, tr: Translator, color: bool, *, main: bool) -> list[str]:
    mark, colour = (
        ("✓", "green") if f.code == "REACHABLE" else (("✗", "red") if f.blocking else ("!", "yellow"))
    )
    head = f"{style(mark, colour, color)} {style(f.code, 'bold ' + colour if main else colour, color)}: {f.message_text.render(tr)}"
    lines = [head]
    if f.evidence_text:
        lines.append("    " + style(tr(N_("evidence:")), "dim", color))
        lines.extend(f"      {e.render(tr)}" for e in f.evidence_text)
    if f.fix_text is not None:
        lines.append("    " + style(tr(N_("fix:")), "bold", color) + " " + f.fix_text.render(tr))
    return lines


def why_text(d: Diagnosis, tr: Translator, *, color: bool = False, verbose: bool = False) -> str:
    """The story: checks (ticks and crosses), then the verdict and fix, then other findings."""
    target = f"[{d.address}]" if d.address and ":" in d.address else (d.address or d.target)
    roles = ", ".join(tr(ROLE_LABELS[r]) for r in ("client", "router", "server") if r in d.roles)
    title = tr(N_("why {target}:{port}/{proto} (this host: {roles})")).format(
        target=target, port=d.port, proto=d.proto, roles=roles or "-"
    )
    out = [style(title, "bold", color)]
    shown = [c for c in d.checks if verbose or c.status != "skipped"]
    cols = max((width(tr(CHECK_LABELS.get(c.name, c.name))) for c in shown), default=0)
    for c in shown:
        mark, colour = MARKS.get(c.status, ("?", "yellow"))
        label = tr(CHECK_LABELS.get(c.name, c.name))
        out.append(f"  {style(mark, colour, color)} {pad(label, cols)}  {c.detail_text.render(tr)}")
    if d.trace is not None and verbose:
        out.append("")
        out.append(trace_table(d.trace, tr, color=color))
    out.append("")
    verdict = tr(N_("verdict: reachable")) if d.reachable else tr(N_("verdict: not reachable"))
    out.append(style(verdict, "bold green" if d.reachable else "bold red", color))
    for i, f in enumerate(d.findings):
        if i == 1:
            out.append("")
            out.append(tr(N_("also:")))
        out.extend(_finding_lines(f, tr, color, main=i == 0))
    return "\n".join(out)


def trace_json(t: TraceResult) -> dict[str, Any]:
    return document(
        target=t.target,
        address=t.address,
        port=t.port,
        proto=t.proto,
        reached=t.reached,
        state=t.state,
        hops=t.hops,
        last_hop=t.last_hop,
    )


def trace_table(t: TraceResult, tr: Translator, *, color: bool = False) -> str:
    rows: list[list[str]] = []
    for h in t.hops:
        if h.address is None:
            rows.append([str(h.ttl), "*", "", tr(N_("no answer"))])
            continue
        note = h.reason or ""
        if h.kind == "time-exceeded":
            note = tr(N_("time exceeded"))
        elif h.kind == "destination":
            note = tr(N_("destination: {reason}")).format(reason=h.reason or "")
        elif h.kind == "unreachable":
            note = tr(N_("unreachable: {reason}")).format(reason=h.reason or "")
        rtt = "" if h.rtt_ms is None else f"{h.rtt_ms:.2f} ms"
        rows.append([str(h.ttl), h.address, rtt, note])
    headers = [tr(N_("TTL")), tr(N_("ADDRESS")), tr(N_("RTT")), tr(N_("ANSWER"))]
    return _table(headers, rows, color, right=(0, 2))


def trace_text(t: TraceResult, tr: Translator, *, color: bool = False) -> str:
    dest = f"[{t.address}]" if ":" in t.address else t.address
    name = f" ({t.target})" if t.target not in (t.address, f"[{t.address}]") else ""
    out = [
        style(
            tr(N_("trace to {dest}:{port}/{proto}{name}")).format(
                dest=dest, port=t.port, proto=t.proto, name=name
            ),
            "bold",
            color,
        )
    ]
    out.append(trace_table(t, tr, color=color))
    out.append("")
    if t.reached:
        msg = tr(N_("reached {address} in {hops} hops: {state} ({reason})")).format(
            address=t.address, hops=len(t.hops), state=t.state, reason=t.reason
        )
        out.append(style(msg, "green" if t.state == "open" else "yellow", color))
    elif t.reason_from is not None:
        msg = tr(N_("{sender} answered {reason}: the port is filtered there")).format(
            sender=t.reason_from, reason=t.reason
        )
        out.append(style(msg, "red", color))
    elif t.last_hop is not None:
        msg = tr(
            N_("the probes die after hop {ttl} ({address}): that router or the next host drops them")
        ).format(ttl=t.last_hop_ttl, address=t.last_hop)
        out.append(style(msg, "red", color))
    else:
        out.append(style(tr(N_("no hop answered: the probes die before the first router")), "red", color))
    return "\n".join(out)
