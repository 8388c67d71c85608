"""portkit.api functions for the probe domain: ``check`` endpoints and ``scan`` hosts.

    import portkit
    portkit.check(["10.0.0.2:22", "[fd00::2]:53/udp"])       # -> CheckReport
    portkit.scan(["10.0.0.0/24"], ports="22,80,443")          # -> ScanReport

Both are plain blocking calls returning frozen dataclasses (:mod:`portkit.model.probe`);
:mod:`portkit.aio` has the same as coroutines. Bad input raises InputError subclasses
before any packet is sent (for ``scan``, a name that does not resolve is reported in
``_errors`` and the other targets are still scanned).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from portkit.engine.endpoint import (
    Resolver,
    Target,
    parse_endpoint,
    parse_ports,
    parse_target,
    resolve_addresses,
)
from portkit.engine.scanplan import compact_ports, profile_for
from portkit.engine.scanresults import host_result, icmp_rate_limit_warnings
from portkit.engine.timing import TimingProfile
from portkit.errors import InputError, PortSpecError, ResolveError, TargetError
from portkit.model.cancel import Cancel
from portkit.model.probe import (
    CheckReport,
    Endpoint,
    HostResult,
    PortState,
    ProbeResult,
    Reason,
    ScanReport,
    TargetProblem,
    Verdict,
)

__all__ = ["check", "scan", "top_ports"]

Progress = Callable[[int, int], None]


def _is_root() -> bool:
    return os.geteuid() == 0


def top_ports(n: int, proto: str = "tcp") -> tuple[int, ...]:
    """The ``n`` most often open ports: nmap's frequencies if nmap is installed, else portkit's list."""
    if not 1 <= n <= 65535:
        raise PortSpecError(f"invalid --top {n}: give a number of ports from 1 to 65535")
    from portkit.backends.nmapdata import nmap_services
    from portkit.parse.nmap_services import top_by_frequency
    from portkit.registry.top_ports import own_top_ports

    entries = list(nmap_services())
    if entries:
        ranked = top_by_frequency(entries, n, proto)
        if len(ranked) >= n:
            return ranked
        extra = [p for p in own_top_ports(n, proto) if p not in set(ranked)]
        return (ranked + tuple(extra))[:n]
    return own_top_ports(n, proto)


def _resolver(resolver: Resolver | None) -> Resolver:
    if resolver is not None:
        return resolver
    from portkit.drivers.prober import system_resolver

    return system_resolver


def _check_scope(address: str, syn: bool) -> str:
    """``address`` if it can be probed; TargetError for a link-local address without its
    interface (fe80::1 is on every link: the kernel cannot pick one and says EINVAL), an
    unknown interface, or a zoned address with --syn (the raw path has no scope yet)."""
    import ipaddress

    bare, _, zone = address.partition("%")
    ip = ipaddress.ip_address(bare)
    if ip.version == 6 and ip.is_link_local and not zone:
        raise TargetError(
            f"{address} is a link-local address: name its interface, e.g. {bare}%eth0 ([{bare}%eth0]:22)"
        )
    if zone:
        if not zone.isdigit():
            from portkit.backends.host import interface_index

            if interface_index(zone) is None:
                raise TargetError(f"unknown interface {zone!r} in {address}: see 'ip link'")
        if syn:
            raise TargetError(f"--syn cannot probe zoned address {address}: drop --syn for a connect scan")
    return address


def _check_family(family: int | None) -> None:
    if family not in (None, 4, 6):
        raise InputError(f"invalid address family {family!r}: valid ones are 4, 6 or None")


def check(
    endpoints: Sequence[str | Endpoint],
    *,
    timeout: float | None = None,
    retries: int | None = None,
    banner: bool = False,
    syn: bool = False,
    family: int | None = None,
    default_proto: str = "tcp",
    resolver: Resolver | None = None,
    banner_timeout: float = 2.0,
) -> CheckReport:
    """Probe each endpoint (``host:port[/proto]``) once, with retransmissions.

    ``timeout`` is the seconds one probe waits for an answer (default 1 s, then adaptive);
    ``retries`` the retransmissions of an unanswered probe (default 1). ``syn`` uses raw
    SYNs (root), so a closed port reads ``reset`` rather than ``conn-refused``.
    """
    _check_family(family)
    if not endpoints:
        raise InputError("no endpoint given: write e.g. 10.0.0.2:22 or [fd00::2]:53/udp")
    parsed = [e if isinstance(e, Endpoint) else parse_endpoint(e, default_proto) for e in endpoints]
    res = _resolver(resolver)
    addrs = [_check_scope(resolve_addresses(e.host, res, family)[0], syn) for e in parsed]
    profile = profile_for(timeout=timeout, retries=1 if retries is None else retries, initial=1.0)
    verdicts: dict[int, Verdict] = {}
    for proto in ("tcp", "udp"):
        idx = [i for i, e in enumerate(parsed) if e.proto == proto]
        if idx:
            verdicts.update(
                _probe_group([addrs[i] for i in idx], [parsed[i].port for i in idx], idx, proto, syn, profile)
            )
    final = [verdicts.get(i, Verdict(PortState.FILTERED, Reason.NO_RESPONSE)) for i in range(len(parsed))]
    banners: dict[int, str | None] = {}
    if banner:
        wanted = [i for i, e in enumerate(parsed) if e.proto == "tcp" and final[i].state is PortState.OPEN]
        banners = _banners(parsed, addrs, wanted, banner_timeout)
    results: list[ProbeResult] = []
    for i, (ep, addr) in enumerate(zip(parsed, addrs, strict=True)):
        v = final[i]
        results.append(
            ProbeResult(
                ep.host, addr, ep.port, ep.proto, v.state, v.reason, v.reason_from, v.rtt_ms, banners.get(i)
            )
        )
    return CheckReport(tuple(results))


def _banners(
    parsed: list[Endpoint], addrs: list[str], wanted: list[int], timeout: float
) -> dict[int, str | None]:
    """Banners of the open endpoints ``wanted``, read in parallel: a silent service costs
    a few timeouts, which must not add up over a list of endpoints."""
    if not wanted:
        return {}
    from concurrent.futures import ThreadPoolExecutor

    from portkit.drivers.prober import grab_banner

    def one(i: int) -> str | None:
        ep = parsed[i]
        return grab_banner(
            addrs[i], ep.port, timeout=timeout, server_name=ep.host if ep.host != addrs[i] else None
        )

    with ThreadPoolExecutor(max_workers=min(32, len(wanted))) as pool:
        return dict(zip(wanted, pool.map(one, wanted), strict=True))


def _probe_group(
    addrs: list[str], ports: list[int], idx: list[int], proto: str, syn: bool, profile: object
) -> dict[int, Verdict]:
    """Probe (addrs[k], ports[k]) pairs; verdicts keyed by the caller's index idx[k]."""
    from portkit.drivers.scanner import ConnectScanner
    from portkit.drivers.udpscan import UdpScanner
    from portkit.engine.timing import TimingProfile

    assert isinstance(profile, TimingProfile)
    uniq = list(dict.fromkeys(addrs))
    items = [(uniq.index(a) << 16) | p for a, p in zip(addrs, ports, strict=True)]
    if proto == "udp":
        outcome = UdpScanner(uniq, items, profile, record_rtt=True).run()
    elif syn:
        from portkit.drivers.synscan import SynScanner

        _require_root("--syn")
        outcome_results: dict[tuple[int, int], Verdict] = {}
        for v6 in (False, True):
            fam_idx = [k for k, a in enumerate(uniq) if (":" in a) == v6]
            if not fam_idx:
                continue
            sub = [uniq[k] for k in fam_idx]
            sub_items = [
                (fam_idx.index(it >> 16) << 16) | (it & 0xFFFF) for it in items if (it >> 16) in fam_idx
            ]
            out = SynScanner(sub, sub_items, profile, record_rtt=True).run()
            if out.interrupted:
                raise KeyboardInterrupt
            for (hi, port), v in out.results.items():
                outcome_results[(fam_idx[hi], port)] = v
        return {
            i: outcome_results[(it >> 16, it & 0xFFFF)]
            for i, it in zip(idx, items, strict=True)
            if (it >> 16, it & 0xFFFF) in outcome_results
        }
    else:
        outcome = ConnectScanner(uniq, items, profile, record_rtt=True).run()
    if outcome.interrupted:
        raise KeyboardInterrupt
    return {
        i: outcome.results[(it >> 16, it & 0xFFFF)]
        for i, it in zip(idx, items, strict=True)
        if (it >> 16, it & 0xFFFF) in outcome.results
    }


def _require_root(what: str) -> None:
    if not _is_root():
        from portkit.errors import PrivilegeError

        raise PrivilegeError(
            f"{what} needs raw sockets (root or CAP_NET_RAW)", hint="drop it for a connect scan"
        )


@dataclass(frozen=True, slots=True)
class _Planned:
    target: str
    address: str


def _plan_targets(
    targets: Sequence[str], resolver: Resolver, family: int | None, syn: bool = False
) -> tuple[list[_Planned], list[TargetProblem], list[Target]]:
    planned: list[_Planned] = []
    problems: list[TargetProblem] = []
    networks: list[Target] = []
    for text in targets:
        t = parse_target(text)  # malformed targets are bad input for the whole command
        if t.kind == "network":
            assert t.network is not None
            if family is not None and t.network.version != family:
                raise TargetError(
                    f"{text} is an IPv{t.network.version} block but -{family} asks for IPv{family} only"
                )
            networks.append(t)
            planned.extend(_Planned(text, a) for a in t.addresses())
            continue
        try:
            addr = _check_scope(resolve_addresses(t.text, resolver, family)[0], syn)
        except ResolveError as exc:
            problems.append(TargetProblem(text, str(exc)))
            continue
        except TargetError as exc:
            problems.append(TargetProblem(text, str(exc)))
            continue
        planned.append(_Planned(text, addr))
    return planned, problems, networks


HOST_GROUP_PROBES = 1 << 19  # (host, port) pairs scanned at once; see scan()


def scan(
    targets: Sequence[str],
    *,
    ports: str | Sequence[int] | None = None,
    top: int | None = None,
    udp: bool = False,
    syn: bool = False,
    family: int | None = None,
    no_ping: bool = False,
    rate: float | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    all_ports: bool = False,
    processes: int | None = None,
    resolver: Resolver | None = None,
    on_progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> ScanReport:
    """Scan ``ports`` (a spec like ``"22,80,8000-8100"``, ``"-"``, or a list; default the top
    1000) of each target (names, addresses, CIDR blocks).

    CIDR blocks are swept for live hosts first unless ``no_ping``. ``syn`` uses raw SYNs
    (root); ``udp`` scans UDP instead (both when ``syn`` and ``udp`` are given).
    A Ctrl-C (or ``cancel.set()`` from another thread) returns what was gathered so far
    with ``interrupted=True``. ``processes`` (default 2 on 2+ cores) forks workers for
    large scans.
    """
    _check_family(family)
    if not targets:
        raise InputError("no target given: name a host, an address or a CIDR block such as 10.0.0.0/24")
    if rate is not None and not 0 < rate < float("inf"):  # NaN compares false: refused too
        raise InputError(f"invalid --rate {rate}: give probes per second, above 0")
    if max_retries is not None and not 0 <= max_retries <= 50:
        raise InputError(f"invalid --max-retries {max_retries}: give 0-50")
    if timeout is not None and not 0 < timeout <= 60:
        raise InputError(f"invalid --timeout {timeout}: give seconds, above 0 and at most 60")
    if syn:
        _require_root("--syn")
    protos = ["udp"] if udp and not syn else (["tcp", "udp"] if udp else ["tcp"])
    port_lists: dict[str, tuple[int, ...]] = {}
    for proto in protos:
        if ports is None:
            port_lists[proto] = top_ports(1000 if top is None else top, proto)
        elif isinstance(ports, str):
            port_lists[proto] = parse_ports(ports)
        else:
            port_lists[proto] = tuple(sorted(set(ports)))
            if not port_lists[proto]:
                raise PortSpecError("no ports given: give e.g. [22, 80] or a spec such as '1-1024'")
            for p in port_lists[proto]:
                if not 1 <= p <= 65535:
                    raise PortSpecError(f"invalid port {p}: ports are 1-65535")
    started = time.time()
    t0 = time.monotonic()
    planned, problems, networks = _plan_targets(targets, _resolver(resolver), family, syn)
    profile = profile_for(timeout=timeout, retries=max_retries, rate=rate)
    interrupted = False
    down: list[str] = []
    try:
        if networks and not no_ping and planned:
            from portkit.drivers.prober import discover

            in_nets = [k for k, p in enumerate(planned) if any(p.target == n.text for n in networks)]
            alive = discover([planned[k].address for k in in_nets], privileged=_is_root())
            dead = {in_nets[j] for j in range(len(in_nets)) if j not in alive}
            down = [planned[k].address for k in sorted(dead)]
            planned = [p for k, p in enumerate(planned) if k not in dead]
    except KeyboardInterrupt:
        interrupted = True
        planned = []
    addresses = list(dict.fromkeys(p.address for p in planned))
    nproc = processes if processes is not None else min(2, os.cpu_count() or 1)
    built: dict[int, HostResult] = {}
    warnings: list[str] = []
    if addresses and not interrupted:
        per_host = sum(len(port_lists[p]) for p in protos)
        # Host groups, as nmap's: a /24 with -Pn -p- is 16.7 million probes, whose work
        # list and verdicts would take gigabytes (and the shuffle alone seconds, deaf to
        # Ctrl-C). A group holds at most HOST_GROUP_PROBES; its hosts are summarised and
        # its verdicts dropped before the next group starts.
        size = max(1, HOST_GROUP_PROBES // per_host)
        progress_state = {"base": 0}
        total_all = per_host * len(addresses)
        try:
            for g0 in range(0, len(addresses), size):
                group = addresses[g0 : g0 + size]
                outcomes: dict[str, dict[tuple[int, int], Verdict]] = {}
                try:
                    interrupted = _scan_group(
                        group,
                        protos,
                        port_lists,
                        profile,
                        syn,
                        nproc,
                        outcomes,
                        progress_state,
                        total_all,
                        on_progress,
                        cancel,
                        warnings,
                    )
                finally:
                    from portkit.backends.nmapdata import service_name

                    where = {a: k for k, a in enumerate(group)}
                    for k, pl in enumerate(planned):
                        if pl.address in where and outcomes:
                            built[k] = host_result(
                                pl.target, pl.address, where[pl.address], outcomes, port_lists, all_ports,
                                service_name,
                            )  # fmt: skip
                if interrupted:
                    break
        except KeyboardInterrupt:
            interrupted = True
    hosts = [built[k] for k in sorted(built)]
    return ScanReport(
        hosts=tuple(hosts),
        elapsed_s=round(time.monotonic() - t0, 3),
        interrupted=interrupted,
        errors=tuple(problems),
        started=started,
        scan_type="syn" if syn else "connect",
        protocol="+".join(protos),
        ports_spec=";".join(f"{proto}:{compact_ports(port_lists[proto])}" for proto in protos),
        down=tuple(down),
        warnings=tuple(warnings),
    )


def _scan_group(
    group: list[str],
    protos: list[str],
    port_lists: dict[str, tuple[int, ...]],
    profile: TimingProfile,
    syn: bool,
    nproc: int,
    outcomes: dict[str, dict[tuple[int, int], Verdict]],
    progress_state: dict[str, int],
    total_all: int,
    on_progress: Progress | None,
    cancel: Cancel | None,
    warnings: list[str],
) -> bool:
    """Scan one host group, filling ``outcomes`` per protocol (and ``warnings``); True when
    interrupted."""
    from portkit.drivers.scanner import connect_scan

    for proto in protos:
        plist = port_lists[proto]
        base = progress_state["base"]

        def progress(done: int, _total: int, base: int = base) -> None:
            if on_progress is not None:
                on_progress(base + done, total_all)

        if proto == "udp":
            from portkit.drivers.udpscan import udp_scan

            out = udp_scan(group, plist, profile, on_progress=progress, cancel=cancel)
            warnings.extend(icmp_rate_limit_warnings(group, out.results, out.late_closed))
        elif syn:
            from portkit.drivers.synscan import syn_scan

            out = syn_scan(group, plist, profile, processes=nproc, on_progress=progress, cancel=cancel)
        else:
            out = connect_scan(group, plist, profile, processes=nproc, on_progress=progress, cancel=cancel)
        outcomes[proto] = out.results
        progress_state["base"] = base + len(plist) * len(group)
        if out.interrupted:
            return True
    return False
