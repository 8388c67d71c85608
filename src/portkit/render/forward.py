"""Kernel forwards and forwarder start-up as text or JSON."""

from __future__ import annotations

from typing import Any

from portkit.model.forward import KernelForwardResult
from portkit.render.jsonout import document
from portkit.render.table import Cell, render_table


def render_kernel(result: KernelForwardResult, *, color: bool = False) -> str:
    where = f" in network namespace {result.netns}" if result.netns else ""
    head = {
        "added": f"installed {len(result.changed)} kernel forward(s){where}",
        "removed": f"removed {len(result.changed)} kernel forward(s){where}",
        "list": f"kernel forwards (nftables table inet portkit_forward){where}",
    }.get(result.action, result.action)
    out = [head]
    if result.rollback_in_s is not None:
        out.append(
            f"rolls back in {result.rollback_in_s:.0f} s unless confirmed: portkit forward --confirm-ok"
            + (f" --netns {result.netns}" if result.netns else "")
        )
    if not result.forwards:
        out.append("no kernel forwards")
        return "\n".join(out)
    rows = []
    for r in result.forwards:
        hooks = "prerouting+output" if r.local else "prerouting"
        who = ", ".join(r.allow) if r.allow else "anyone"
        if r.deny:
            who += " except " + ", ".join(r.deny)
        rows.append(
            [
                r.proto,
                r.listen,
                r.target,
                hooks,
                "yes" if r.masquerade else "no",
                who,
                Cell("yes", "green") if r.installed else Cell("MISSING", "red"),
            ]
        )
    out.append(
        render_table(
            ["PROTO", "LISTEN", "TARGET", "HOOKS", "MASQUERADE", "FROM", "INSTALLED"], rows, color=color
        )
    )
    return "\n".join(out)


def kernel_document(result: KernelForwardResult) -> dict[str, Any]:
    return document(
        action=result.action,
        forwards=list(result.forwards),
        changed=list(result.changed),
        warnings=list(result.warnings),
        rollback_in_s=result.rollback_in_s,
        netns=result.netns,
    )
