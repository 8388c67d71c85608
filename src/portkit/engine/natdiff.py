"""The difference between two reads of the translation table (``portkit nat --watch``).

A flow is known by its original tuple and protocol (:attr:`NatEntry.key`): a flow in the
second read only is new, one in the first only is gone, and one in both whose conntrack
state differs has changed. Timeouts tick down on every read and are no change.
"""

from __future__ import annotations

from collections.abc import Sequence

from portkit.model.nat import NatEntry

__all__ = ["nat_diff"]


def nat_diff(
    before: Sequence[NatEntry], after: Sequence[NatEntry]
) -> tuple[tuple[NatEntry, ...], tuple[NatEntry, ...], tuple[NatEntry, ...]]:
    """(new flows, gone flows, flows whose state changed) between two reads (``nat --watch``)."""
    old = {e.key: e for e in before}
    new = {e.key: e for e in after}
    added = tuple(e for k, e in new.items() if k not in old)
    gone = tuple(e for k, e in old.items() if k not in new)
    changed = tuple(e for k, e in new.items() if k in old and old[k].state != e.state)
    return added, gone, changed
