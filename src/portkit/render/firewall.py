"""Firewall results as text: fw check, fw list, fw show, fw status, fw apply."""

from __future__ import annotations

import time

from portkit.model.firewall import ApplyResult, FwCheckResult, FwStatus, PolicyListing, RulesetView
from portkit.render.table import Cell, render_table, style

_VERDICT_STYLE = {"accept": "green", "drop": "red", "reject": "red", "unknown": "yellow"}


def render_check(r: FwCheckResult, *, color: bool = False) -> str:
    lines = [f"{style(r.verdict.upper(), 'bold ' + _VERDICT_STYLE.get(r.verdict, ''), color)}  (hook {r.hook})"]
    if r.decided_by is not None:
        d = r.decided_by
        handle = f" handle {d.handle}" if d.handle is not None else ""
        lines.append(f"decided by: {d.table} chain {d.chain}{handle}: {d.rule}")
    else:
        lines.append("decided by: no rule (nothing filters this hook)")
    if r.translated_destination is not None:
        t = r.translated_destination
        port = f" port {t.port}" if t.port is not None else ""
        lines.append(f"translated destination: {t.address}{port}")
    if r.reason:
        lines.append(f"undetermined: {r.reason}")
    if r.trace:
        lines.append("trace:")
        rows: list[list[str | Cell]] = [[s.table, s.chain, Cell(s.result, _VERDICT_STYLE.get(s.result.split(":")[0])), s.rule] for s in r.trace]
        lines.extend("  " + ln for ln in render_table(["TABLE", "CHAIN", "RESULT", "RULE"], rows, color=color).splitlines())
    return "\n".join(lines)


def render_policy(listing: PolicyListing, *, color: bool = False) -> str:
    from portkit.engine.policy import rule_text

    head = f"policy {listing.path}" + ("" if listing.exists else " (does not exist yet: the defaults)")
    lines = [
        style(head, "bold", color),
        f"default: in {listing.default_in}, out {listing.default_out}; essential ICMP "
        + ("passes" if listing.essential_icmp else "is not special"),
    ]
    if listing.rules:
        rows: list[list[str | Cell]] = [[str(i), r.direction, Cell(r.action, "green" if r.action == "allow" else "red"), rule_text(r).split(" ", 2)[2]]
                for i, r in enumerate(listing.rules, 1)]  # fmt: skip
        lines.append(render_table(["#", "DIR", "ACTION", "MATCH"], rows, color=color, right=(0,)))
    else:
        lines.append("no rules")
    for w in listing.warnings:
        where = f"line {w.line}: " if w.line else ""
        lines.append(style(f"warning: {where}{w.message}", "yellow", color))
    return "\n".join(lines)


def render_view(view: RulesetView, *, color: bool = False) -> str:
    if not view.chains:
        return "the ruleset is empty: nothing filters or translates packets"
    out: list[str] = [style("hooks (base chains in the order the kernel runs them)", "bold", color)]
    for h in view.hooks:
        out.append(f"  {h.hook} [{h.family}]")
        out.extend(f"    {i}. {c}" for i, c in enumerate(h.chains, 1))
    current = None
    for c in view.chains:
        if c.table != current:
            current = c.table
            out.append("")
            out.append(style(f"table {c.table}", "bold", color))
        if c.hook:
            dev = f" dev {c.device}" if c.device else ""
            out.append(f"  chain {c.chain}  [{c.type} hook {c.hook} prio {c.prio}{dev}, policy {c.policy}]")
        else:
            out.append(f"  chain {c.chain}")
        for r in c.rules:
            text = r.rule
            for word in ("accept", "drop", "reject"):
                if text.endswith(word) or f" {word} " in text or text.startswith(f"{word} "):
                    text = text.replace(word, style(word, _VERDICT_STYLE[word], color), 1) if color else text
                    break
            out.append(f"    [{r.handle}] {text}" if r.handle is not None else f"    {text}")
        if not c.rules:
            out.append("    (no rules)")
    if view.sets:
        out.append("")
        out.append(style("sets and maps", "bold", color))
    for st in view.sets:
        shown = ", ".join(st.elements[:_SET_SHOWN])
        more = f", ... ({len(st.elements) - _SET_SHOWN} more)" if len(st.elements) > _SET_SHOWN else ""
        out.append(f"  {st.kind} {st.table} @{st.name} ({st.type}): {{ {shown}{more} }}" if st.elements else f"  {st.kind} {st.table} @{st.name} ({st.type}): empty")
    for n in view.notes:
        out.append(f"note: {n}")
    return "\n".join(out)


_SET_SHOWN = 24  # elements per set in the table; --json lists them all


def render_status(s: FwStatus, *, color: bool = False) -> str:
    where = f"namespace {s.netns}" if s.netns else "this host"
    lines = [
        f"firewall on {where}: "
        + (style(f"active, {s.rules} rules in table inet portkit", "green", color) if s.active else style("inactive (no table inet portkit)", "yellow", color)),
        f"policy file: {s.policy_file}"
        + {True: " (loaded rules match it)", False: " (changed since it was applied: run 'portkit fw apply')", None: ""}[s.in_sync],
        f"applied at boot: {'yes (portkit-firewall.service)' if s.boot_unit else 'no (portkit fw enable)'}",
    ]
    if s.pending_rollback:
        left = f"{s.rollback_seconds_left:.0f} s" if s.rollback_seconds_left is not None else "soon"
        lines.append(style(f"rollback pending in {left}: run 'portkit fw confirm' to keep these rules", "yellow", color))
    if s.last_rollback:
        lines.append(f"last rollback: {s.last_rollback}")
    return "\n".join(lines)


def render_apply(r: ApplyResult, *, color: bool = False) -> str:
    where = f" in namespace {r.netns}" if r.netns else ""
    lines = [style(f"applied {r.rules} rules as table {r.table}{where}", "green", color)]
    if r.previous_saved:
        lines.append(f"previous table kept in {r.previous_saved}")
    if r.confirm_deadline is not None:
        left = max(0, round(r.confirm_deadline - time.time()))
        lines.append(style(f"run 'portkit fw confirm' within {left} s or the previous rules come back", "yellow", color))
    for w in r.warnings:
        lines.append(style(f"warning: {w.message}", "yellow", color))
    return "\n".join(lines)
