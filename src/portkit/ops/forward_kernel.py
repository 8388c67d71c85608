"""Kernel forwards (``portkit forward --kernel``): nftables DNAT kept in ``inet portkit_forward``.

The table is rendered whole from the list of forwards (:mod:`portkit.engine.forwardnft`)
and loaded atomically. The list is kept in ``/run/portkit/forward/<netns|host>.json``; the
kernel is the judge of what is really installed (rules carry their SPEC as a comment), so a
rollback that fired, or a reboot, never leaves the listing lying.

With ``confirm`` seconds, the firewall's generic rollback timer (backends/rollback.py) is
armed with the previous table *before* the new one is loaded: unless
``portkit forward --confirm-ok`` comes in time, the old state returns by itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from portkit.backends import kernel_forward as host
from portkit.engine.forwardnft import installed_specs, kernel_forward, render_script
from portkit.engine.forwardspec import parse_spec, spec_has_bind
from portkit.errors import InputError, PortkitError, SystemRefused
from portkit.model.forward import ForwardSpec, KernelForward, KernelForwardResult, KernelForwardRow


def _rollback_name(netns: str | None) -> str:
    from portkit.backends.netns import state_key

    return f"forward-{state_key(netns)}"


def _installed(netns: str | None) -> dict[str, set[str]]:
    from portkit.backends import nft

    try:
        return installed_specs(nft.list_ruleset_json(netns=netns))
    except SystemRefused:
        return {}


def _resolve_target(spec: ForwardSpec) -> ForwardSpec:
    try:
        ipaddress.ip_address(spec.target_host)
        return spec
    except ValueError:
        pass
    from portkit.backends.host import resolve

    _fam, addr = resolve(spec.target_host, spec.target_port)[0]
    return ForwardSpec(
        spec.bind, spec.listen_port, str(addr[0]), spec.target_port, spec.proto, spec.allow, spec.deny
    )


def _fit_family(spec: ForwardSpec, text: str) -> ForwardSpec:
    """The default bind (0.0.0.0) becomes :: for an IPv6 target; a bind the SPEC names is
    kept, so ``0.0.0.0:8080:[fd00::2]:80`` is refused later (NAT cannot change the family)."""
    if spec.bind == "0.0.0.0" and ":" in spec.target_host and not spec_has_bind(text):
        return ForwardSpec(
            "::", spec.listen_port, spec.target_host, spec.target_port, spec.proto, spec.allow, spec.deny
        )
    return spec


def _build(
    specs: Sequence[ForwardSpec], local: dict[str, bool], netns: str | None
) -> list[tuple[ForwardSpec, KernelForward]]:
    out = []
    for s in specs:
        out.append(
            (
                s,
                kernel_forward(
                    s,
                    local=local.get(str(s), False),
                    target_is_local=host.is_local_address(s.target_host, netns),
                    netns=netns,
                ),
            )
        )
    return out


def _rows(
    pairs: Sequence[tuple[ForwardSpec, KernelForward]], netns: str | None
) -> tuple[KernelForwardRow, ...]:
    inst = _installed(netns)
    rows = [
        KernelForwardRow(
            spec=f.spec,
            proto=s.proto,
            listen=s.listen,
            target=s.target,
            local=f.local,
            masquerade=f.masquerade,
            installed=f.spec in inst,
            allow=s.allow,
            deny=s.deny,
            netns=netns,
        )
        for s, f in pairs
    ]
    known = {r.spec for r in rows}
    for spec_text in sorted(set(inst) - known):  # in the kernel but not in our state file
        try:
            s = parse_spec(spec_text)
        except PortkitError:
            continue
        rows.append(
            KernelForwardRow(
                spec_text,
                s.proto,
                s.listen,
                s.target,
                "output" in inst[spec_text],
                "postrouting" in inst[spec_text],
                True,
                (),
                (),
                netns,
            )
        )
    return tuple(rows)


def _current(netns: str | None) -> tuple[list[ForwardSpec], dict[str, bool]]:
    """Our state file, minus forwards the kernel no longer has (a rollback fired, a reboot)."""
    specs, local = host.load_state(netns)
    inst = _installed(netns)
    return [s for s in specs if str(s) in inst], local


def _apply(
    pairs: list[tuple[ForwardSpec, KernelForward]],
    previous: list[tuple[ForwardSpec, KernelForward]],
    netns: str | None,
    confirm: float | None,
) -> float | None:
    from portkit.backends import nft

    script = render_script(pairs)
    nft.load_script(script, netns=netns, check_only=True)  # refuse before arming anything
    left = None
    if confirm is not None:
        from portkit.backends import rollback

        st = rollback.arm(_rollback_name(netns), render_script(previous), confirm, netns=netns)
        left = st.seconds_left
    nft.load_script(script, netns=netns)
    return left


def kernel_forward_add(
    texts: Sequence[str],
    *,
    local: bool = False,
    route_localnet: bool = False,
    allow: Sequence[str] = (),
    deny: Sequence[str] = (),
    netns: str | None = None,
    confirm: float | None = None,
) -> KernelForwardResult:
    """Install forwards as DNAT (+ masquerade); returns every forward of the table afterwards."""
    if netns is not None:
        host.netns_path(netns)
    new = [
        _fit_family(_resolve_target(parse_spec(t, allow=allow, deny=deny, default_bind="0.0.0.0")), t)
        for t in texts
    ]
    if not new:
        raise InputError("no forward SPEC given; e.g. portkit forward --kernel 8080:10.0.0.2:80")
    cur, local_flags = _current(netns)
    previous = _build(cur, local_flags, netns)
    keys = {s.key for s in new}
    if len(keys) != len(new):
        raise InputError("two SPECs listen on the same port; each listen port may be used once")
    merged = [s for s in cur if s.key not in keys] + new
    for s in new:
        local_flags[str(s)] = local
    pairs = _build(merged, local_flags, netns)
    warnings: list[str] = []
    new_pairs = [(s, f) for s, f in pairs if s in new]
    loop_targets = [s for s, f in new_pairs if ipaddress.ip_address(s.target_host).is_loopback]
    if loop_targets and not route_localnet:
        s = loop_targets[0]
        if not local:
            raise InputError(
                f"{s.target} is a loopback address: packets from other hosts that are DNAT'ed to it are "
                "dropped by the kernel as martians",
                hint="pass --route-localnet to set net.ipv4.conf.all.route_localnet=1, or --local to catch "
                "only this host's own connections, or target an interface address",
            )
    if any(s.bind == "0.0.0.0" or s.bind == "::" for s, _f in new_pairs) and not allow:
        warnings.append(
            "the forward catches traffic to every address of this host from anyone (add --allow CIDR)"
        )
    # --local to another host: a connection this host makes to 127.0.0.1:PORT is DNAT'ed in
    # the output hook but keeps its 127.0.0.1 source, which the kernel will not route off
    # lo (masquerade comes too late) unless route_localnet=1: it hangs in SYN retries.
    lo_sources = [
        s
        for s, f in new_pairs
        if f.local and f.masquerade and f.family == 4 and (s.bind == "0.0.0.0" or ipaddress.ip_address(s.bind).is_loopback)
    ]
    if lo_sources and not route_localnet:
        s = lo_sources[0]
        warnings.append(
            f"this host's own connections to 127.0.0.1:{s.listen_port} cannot reach {s.target} without "
            "net.ipv4.conf.all.route_localnet=1 (they would leave with source 127.0.0.1, which the kernel "
            "drops): connect to an interface address of this host, or add --route-localnet"
        )
    if (loop_targets or lo_sources) and route_localnet:
        old = host.sysctl("net.ipv4.conf.all.route_localnet", "1", netns)
        if old != "1":
            warnings.append(
                "set net.ipv4.conf.all.route_localnet=1 so 127.0.0.0/8 addresses may cross interfaces after DNAT; "
                "this host now accepts and routes 127.0.0.0/8 addresses arriving on its interfaces"
            )
    left = _apply(pairs, previous, netns, confirm)
    for _s, f in new_pairs:
        if f.masquerade:
            key = "net.ipv6.conf.all.forwarding" if f.family == 6 else "net.ipv4.ip_forward"
            if host.sysctl(key, "1", netns) != "1":
                warnings.append(f"turned on {key}: this host now routes packets between its interfaces")
    host.save_state(netns, merged, local_flags)
    return KernelForwardResult(
        "added", _rows(pairs, netns), tuple(str(s) for s in new), tuple(warnings), left, netns
    )


def kernel_forward_remove(
    texts: Sequence[str],
    *,
    all_forwards: bool = False,
    netns: str | None = None,
    confirm: float | None = None,
) -> KernelForwardResult:
    """Remove forwards by SPEC (or LISTEN_PORT[/proto]); with ``all_forwards``, the whole table."""
    if netns is not None:
        host.netns_path(netns)
    cur, local_flags = _current(netns)
    previous = _build(cur, local_flags, netns)
    if all_forwards:
        gone = list(cur)
    else:
        gone = []
        for t in texts:
            hit = _match(t, cur)
            if not hit:
                listing = ", ".join(str(s) for s in cur) or "none"
                raise InputError(f"no kernel forward matches {t!r}; installed: {listing}")
            gone += [s for s in hit if s not in gone]
    keep = [s for s in cur if s not in gone]
    pairs = _build(keep, local_flags, netns)
    left = _apply(pairs, previous, netns, confirm)
    host.save_state(netns, keep, local_flags)
    return KernelForwardResult("removed", _rows(pairs, netns), tuple(str(s) for s in gone), (), left, netns)


def _match(text: str, cur: Sequence[ForwardSpec]) -> list[ForwardSpec]:
    body, slash, proto = text.partition("/")
    if body.isdigit():  # any script's digits: parse_port takes ASCII ones only
        from portkit.engine.endpoint import parse_port

        port, proto = parse_port(body, where=f" in --remove {text!r}"), proto.lower()
        if slash and proto not in ("tcp", "udp"):
            raise InputError(f"invalid protocol {proto!r} in --remove {text!r}; valid ones are: tcp, udp")
        return [s for s in cur if s.listen_port == port and (not proto or s.proto == proto)]
    spec = _fit_family(parse_spec(text, default_bind="0.0.0.0"), text)
    return [s for s in cur if s.key == spec.key]


def kernel_forward_list(*, netns: str | None = None) -> KernelForwardResult:
    if netns is not None:
        host.netns_path(netns)
    specs, local = host.load_state(netns)
    return KernelForwardResult("list", _rows(_build(specs, local, netns), netns), (), (), None, netns)


def kernel_forward_confirm(*, netns: str | None = None) -> bool:
    """Keep the kernel forwards applied with ``confirm``: disarm the rollback timer."""
    from portkit.backends import rollback

    return rollback.confirm(_rollback_name(netns))
