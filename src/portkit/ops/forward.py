"""portkit.api functions for the forward domain: userspace forwards, kernel forwards, NAT table.

import portkit
portkit.nat_entries(port=7, netns="pk-lab-router")      # -> tuple[NatEntry, ...]
portkit.forward_specs(["8080:2988"])                     # -> tuple[ForwardSpec, ...]
portkit.run_forwarder(specs)                             # serve until SIGTERM
portkit.kernel_forward_add(["0.0.0.0:8080:10.0.2.2:80"], netns="pk-lab-router")
portkit.kernel_forward_list(netns=...) / kernel_forward_remove([...], netns=...)
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator, Sequence

from portkit.engine.forwardspec import check_unique, is_loopback_bind, parse_spec
from portkit.engine.natdiff import nat_diff
from portkit.errors import InputError
from portkit.model.forward import ForwardOptions, ForwardSpec, KernelForwardResult, KernelForwardRow
from portkit.model.nat import NatChange, NatEntry
from portkit.ops.forward_kernel import (
    kernel_forward_add,
    kernel_forward_confirm,
    kernel_forward_list,
    kernel_forward_remove,
)

__all__: list[str] = [
    "KernelForwardResult",
    "KernelForwardRow",
    "check_options",
    "exposure_warnings",
    "forward_specs",
    "kernel_forward_add",
    "kernel_forward_confirm",
    "kernel_forward_list",
    "kernel_forward_remove",
    "nat_diff",
    "nat_entries",
    "run_forwarder",
    "watch_nat",
    "who_holds",
]

_PROTOS = ("tcp", "udp", "icmp", "icmpv6", "sctp", "dccp", "gre")


def nat_entries(
    *,
    port: int | None = None,
    host: str | None = None,
    proto: str | None = None,
    netns: str | None = None,
    source: str = "auto",
    text: str | None = None,
    netns_pid: int | None = None,
) -> tuple[NatEntry, ...]:
    """The translated flows in the kernel's conntrack table (or in ``text``), filtered.

    ``port`` matches any port of either tuple, ``host`` any address (an IP or a CIDR),
    ``proto`` the L4 protocol name. ``source``: "proc", "tool" or "auto". ``netns`` (an
    ``ip netns`` name) or ``netns_pid`` (a process, e.g. a container) reads another namespace.
    """
    from portkit.parse.conntrack import matches, parse_table

    if port is not None and not 1 <= port <= 65535:
        raise InputError(f"invalid port {port}; valid ports are 1-65535")
    if proto is not None:
        proto = proto.lower()
        if proto not in _PROTOS:
            raise InputError(f"invalid protocol {proto!r}; valid ones are: {', '.join(_PROTOS)}")
    if host is not None:
        try:
            if "/" in host:
                ipaddress.ip_network(host, strict=False)
            else:
                ipaddress.ip_address(host)
        except ValueError:
            raise InputError(f"invalid --host {host!r}; expected an IP address or a CIDR block") from None
    if text is None:
        from portkit.backends.conntrack import read_table

        text = read_table(netns, source=source, netns_pid=netns_pid)
    return tuple(e for e in parse_table(text) if matches(e, port=port, host=host, proto=proto))


def watch_nat(
    before: Sequence[NatEntry],
    read: Callable[[], Sequence[NatEntry]],
    *,
    interval: float,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[NatChange]:
    """Read the table every ``interval`` seconds with ``read`` and yield what changed since
    the read before (``before`` is the first); a read with no change yields nothing.

    Endless: the caller stops iterating (``nat --watch`` ends on Ctrl-C). ``clock`` (seconds
    since the epoch) and ``sleep`` are injected so tests run without waiting.
    """
    if not interval > 0:
        raise InputError(f"invalid interval {interval!r}; use a positive number of seconds")
    while True:
        sleep(interval)
        now = read()
        added, gone, changed = nat_diff(before, now)
        before = now
        if added or gone or changed:
            yield NatChange(clock(), added, gone, changed)


def forward_specs(
    texts: Sequence[str],
    *,
    allow: Sequence[str] = (),
    deny: Sequence[str] = (),
    default_bind: str = "127.0.0.1",
) -> tuple[ForwardSpec, ...]:
    """Parse SPECs (raising InputError, exit 2) and check no listen address is used twice."""
    specs = tuple(parse_spec(t, allow=allow, deny=deny, default_bind=default_bind) for t in texts)
    check_unique(specs)
    return specs


def exposure_warnings(specs: Sequence[ForwardSpec]) -> list[str]:
    """A warning per forward that listens beyond loopback with no --allow."""
    out = []
    for s in specs:
        if not s.allow and not is_loopback_bind(s.bind):
            out.append(
                f"{s.listen}/{s.proto} listens beyond loopback with no --allow: {s.target} is now "
                "reachable by anyone who can reach this host (add --allow CIDR)"
            )
    return out


def who_holds(bind: str, port: int, proto: str) -> str | None:
    """Who holds ``port`` (as ``portkit who`` says it): "pid 123 (nginx)", or None."""
    try:
        from portkit.ops.inspect import who

        report = who(port, proto)
    except Exception:  # best effort: the error about the port is what matters
        return None
    for h in report.holders:
        if h.pid:
            name = h.process or "?"
            return f"pid {h.pid} ({name}, listening on {h.local_address}:{h.local_port})"
    if report.holders:
        h = report.holders[0]
        return f"a socket on {h.local_address}:{h.local_port} with no visible owner"
    return None


def default_workers() -> int:
    """One event loop per core, at most 4 (measured: 2 loops on 2 cores, bench/RESULTS.md)."""
    import os

    return max(1, min(4, os.cpu_count() or 1))


def check_options(options: ForwardOptions, *, use_splice: bool | None = None) -> None:
    """Refuse (InputError) options the kernel would reject once traffic flows: checked by
    ``forward --check`` and before the forwarder starts, never on the first connection."""
    from portkit.drivers.forwarder_tcp import pipe_size_refusal
    from portkit.model.forward import PIPE_SIZE_MAX, PIPE_SIZE_MIN

    size = options.pipe_size
    if not PIPE_SIZE_MIN <= size <= PIPE_SIZE_MAX:
        raise InputError(f"invalid pipe size {size}: use {PIPE_SIZE_MIN}-{PIPE_SIZE_MAX} bytes")
    if use_splice is not False:
        why = pipe_size_refusal(size)
        if why:
            raise InputError(f"invalid --pipe-size {size}: {why}", hint="use a smaller size, e.g. 1048576")


def run_forwarder(
    specs: Sequence[ForwardSpec],
    options: ForwardOptions | None = None,
    *,
    log: Callable[[str], None] | None = None,
    stats_interval: float | None = None,
    stats_out: Callable[[str], None] | None = None,
    reload_source: Callable[[], tuple[Sequence[ForwardSpec], ForwardOptions]] | None = None,
    use_splice: bool | None = None,
    signals: bool = True,
    on_started: Callable[[], None] | None = None,
    workers: int | None = None,
    bulk_threads: int | None = None,
) -> None:
    """Run the userspace forwarder until SIGTERM/SIGINT (drain) — blocking.

    ``bulk_threads``: at most this many threads (two per flow) move bulk TCP flows with
    blocking splice (drivers/forwarder_bulk.py); 0 keeps every flow in the event loops.

    Start-up is all or nothing: a listen port in use or a target that does not resolve
    raises InputError (exit 2) before anything is served. Stopped by SIGINT (Ctrl-C, with
    ``signals``), it raises :class:`~portkit.errors.Interrupted` (exit 130) once drained.
    """
    from portkit.drivers.forwarder import DEFAULT_BULK_THREADS, Forwarder, check_platform

    check_platform()
    check_options(options or ForwardOptions(), use_splice=use_splice)
    fwd = Forwarder(
        specs,
        options,
        log=log,
        who_holds=who_holds,
        use_splice=use_splice,
        stats_interval=stats_interval,
        stats_out=stats_out,
        reload_source=reload_source,
        workers=workers or default_workers(),
        bulk_threads=DEFAULT_BULK_THREADS if bulk_threads is None else bulk_threads,
    )
    if signals:  # before start(): its "forwarding ..." line tells a supervisor it may signal us
        fwd.install_signal_handlers()
    fwd.start()
    if on_started is not None:
        on_started()
    fwd.run()
    if fwd.interrupted:
        from portkit.errors import Interrupted

        raise Interrupted("interrupted: stopped forwarding")
