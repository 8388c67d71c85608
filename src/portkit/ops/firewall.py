"""portkit.api functions for the firewall domain: policy edits, check, compile, apply, show.

Every function that touches the kernel takes ``netns`` (an ``ip netns`` name) so tests and
labs work inside namespaces only. Policy files default to /etc/portkit/policy.yaml; one
that does not exist yet reads as the defaults (inbound deny, outbound allow).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from portkit.backends import nft as nftb
from portkit.engine.nfteval import Evaluator
from portkit.engine.nftview import list_dnat, ruleset_view
from portkit.engine.policy import add_rule, delete_rule, evaluate_policy, shadowed_rules
from portkit.errors import FileFormatError, InputError, PrivilegeError, SystemRefused, TargetError
from portkit.model.firewall import (
    HOOKS,
    DnatEntry,
    FwCheckResult,
    IPAddress,
    NftRuleset,
    Packet,
    Policy,
    PolicyListing,
    PolicyRule,
    PortRange,
    RulesetView,
)
from portkit.parse.nftjson import has_ambiguous, has_xt, hidden_nfproto, parse_ruleset, resolve_hidden

__all__ = [
    "DEFAULT_POLICY",
    "annotate_inbound",
    "apply_policy",
    "check_packet",
    "compile_policy_file",
    "confirm_apply",
    "disable_boot",
    "dnat_published",
    "edit_policy",
    "enable_boot",
    "firewall_status",
    "list_policy",
    "live_ruleset",
    "load_policy_file",
    "reset_firewall",
    "show_ruleset",
]

if TYPE_CHECKING:
    from portkit.model.sockets import SocketTable

DEFAULT_POLICY = "/etc/portkit/policy.yaml"
STATE_DIR = os.environ.get("PORTKIT_RUN_DIR", "/run/portkit") + "/firewall"
CACHE_DIR = os.environ.get("PORTKIT_RUN_DIR", "/run/portkit") + "/cache"


# --------------------------------------------------------------------------- policy files


def _services() -> Mapping[tuple[str, str], int]:
    """{(name, proto): port} from the inspect domain's registry (/etc/services)."""
    from portkit.backends.services import service_db
    from portkit.registry.services import ports_by_name

    return ports_by_name(service_db().etc)


def load_policy_file(path: str = DEFAULT_POLICY) -> Policy:
    """The policy in ``path``; the defaults when the file does not exist."""
    from portkit.parse.policy_yaml import load_policy

    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return Policy()
    except IsADirectoryError:
        raise FileFormatError(path, "is a directory, not a policy file") from None
    except PermissionError as exc:
        raise PrivilegeError(f"cannot read policy file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise FileFormatError(path, f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    return load_policy(text, path=path, services=_services())


def _save(path: str, policy: Policy) -> None:
    from portkit.parse.policy_yaml import dump_policy

    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
        mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else 0o644
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".policy-", suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            f.write(dump_policy(policy))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except PermissionError as exc:
        raise PrivilegeError(f"cannot write policy file {path}: {exc.strerror}") from exc


@contextlib.contextmanager
def _edit_lock(path: str) -> Iterator[None]:
    """Serialise read-modify-write edits of one policy file (two ``fw allow`` at once must
    not lose a rule): an flock on the file's directory, which the atomic replace keeps."""
    import fcntl

    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    except PermissionError as exc:
        raise PrivilegeError(f"cannot write policy file {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def list_policy(path: str = DEFAULT_POLICY) -> PolicyListing:
    p = load_policy_file(path)
    return PolicyListing(path, os.path.exists(path), p.default_in, p.default_out, p.essential_icmp, p.rules, shadowed_rules(p))


def parse_port_arg(text: str | None) -> tuple[str, tuple[PortRange, ...], tuple[str, ...]]:
    """``22``, ``22/tcp``, ``8000-8100/udp``, ``ssh``, ``icmp``, ``any`` -> (proto, ports, texts)."""
    from portkit.parse.policy_yaml import load_policy

    if text is None or text in ("", "any"):
        return "any", (), ()
    spec, _, proto = text.partition("/")
    proto = proto.lower() or ("any" if spec[:1].isdigit() else "")
    if spec.lower() in ("tcp", "udp", "icmp", "icmpv6") and not proto:
        return spec.lower(), (), ()
    if proto not in ("tcp", "udp", "any", ""):
        raise InputError(f"bad protocol {proto!r} in {text!r}; valid: tcp, udp (icmp and icmpv6 take no port)")
    # reuse the file parser for port validation and service names
    doc = f"rules:\n  - {{action: allow, proto: {proto or 'any'}, port: [{spec}]}}\n"
    try:
        pol = load_policy(doc, path="<command line>", services=_services())
    except FileFormatError as exc:
        raise InputError(f"bad port {text!r}: {exc.problem}") from None
    rule = pol.rules[0]
    return rule.proto, rule.ports, rule.port_text


def edit_policy(
    path: str = DEFAULT_POLICY,
    *,
    op: str,
    action: str | None = None,
    port: str | None = None,
    direction: str = "in",
    sources: tuple[str, ...] = (),
    destinations: tuple[str, ...] = (),
    interface: str | None = None,
    log: bool = False,
    comment: str | None = None,
    number: int | None = None,
) -> PolicyListing:
    """``op`` = append | insert | delete, like ufw. Validates the whole result before writing."""
    from portkit.parse.policy_yaml import dump_policy, load_policy

    with _edit_lock(path):
        policy = load_policy_file(path)
        if op == "delete":
            try:
                policy = delete_rule(policy, number or 0)
            except IndexError as exc:
                raise InputError(str(exc)) from None
        else:
            proto, ports, texts = parse_port_arg(port)
            rule = PolicyRule(direction, action or "allow", proto, ports, texts, sources, destinations, interface, "any", log, comment)
            # round-trip through the file format so a rule from the command line is checked exactly
            # like one in the file (impossible rules, bad CIDRs), with the command line as "file"
            probe = dump_policy(Policy(rules=(rule,)))
            try:
                rule = load_policy(probe, path="<command line>", services=_services()).rules[0]
            except FileFormatError as exc:
                raise InputError(exc.problem) from None
            try:
                policy = add_rule(policy, rule, position=number if op == "insert" else None)
            except IndexError as exc:
                raise InputError(str(exc)) from None
        _save(path, policy)
    return list_policy(path)


# --------------------------------------------------------------------------- live ruleset


def live_ruleset(*, netns: str | None = None, cache: bool = True) -> NftRuleset:
    """The kernel's ruleset; ``xt`` rules of iptables-nft are read through iptables-save.

    Parsed rulesets are cached under /run/portkit/cache keyed by the namespace's cookie and
    nftables generation id, which every commit changes: a cached ruleset is exactly the live
    one, and checks after the first skip ``nft -j list ruleset`` (slow on big rulesets).
    """
    if os.environ.get("PORTKIT_FW_CACHE") == "0":
        cache = False
    key = nftb.ruleset_generation(netns=netns) if cache else None
    path = os.path.join(CACHE_DIR, f"ruleset-{key[0]}-{key[1]}-{_parser_stamp()}.pickle") if key else None
    if path is not None:
        cached = _cache_load(path)
        if cached is not None:
            return cached
    rs = parse_ruleset(nftb.list_ruleset_json(netns=netns))
    if has_ambiguous(rs):
        rs = resolve_hidden(rs, hidden_nfproto(nftb.list_ruleset_debug(netns=netns)))
    if has_xt(rs):
        from portkit.parse.iptables_save import merge_iptables

        v4 = nftb.iptables_save(netns=netns)
        v6 = nftb.iptables_save(ipv6=True, netns=netns)
        rs = merge_iptables(rs, v4, v6)
    if path is not None and key is not None and nftb.ruleset_generation(netns=netns) == key:
        _cache_store(path, rs)
    return rs


def _parser_stamp() -> str:
    """Names the code that parsed a cached ruleset: a cache written by another version of
    the parser (an upgrade while the machine runs) must not be read back."""
    import zlib

    from portkit.model import firewall as model
    from portkit.parse import iptables_save, nftjson

    parts = []
    for mod in (model, nftjson, iptables_save):
        try:
            st = os.stat(mod.__file__ or "")
            parts.append(f"{mod.__name__}:{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append(mod.__name__)
    return f"{zlib.crc32(';'.join(parts).encode()):08x}"


def _cache_load(path: str) -> NftRuleset | None:
    import pickle

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
            return None  # only our own private files are trusted
        try:
            obj = pickle.load(f)
        except Exception:
            return None
    return obj if isinstance(obj, NftRuleset) else None


def _cache_store(path: str, rs: NftRuleset) -> None:
    import pickle

    try:
        os.makedirs(CACHE_DIR, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=CACHE_DIR, prefix=".ruleset-")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(rs, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        olds = sorted((os.path.join(CACHE_DIR, n) for n in os.listdir(CACHE_DIR) if n.startswith("ruleset-")), key=os.path.getmtime)
        for old in olds[:-8]:
            os.unlink(old)
    except OSError:
        pass  # a cache that cannot be written only costs time


def _local_addresses(netns: str | None) -> frozenset[IPAddress]:
    out: set[IPAddress] = set()
    for a in nftb.local_addresses(netns=netns):
        with contextlib.suppress(ValueError):
            out.add(ipaddress.ip_address(a))
    return frozenset(out)


def _addr(text: str, what: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise TargetError(f"bad {what} address {text!r}; use an IPv4 or IPv6 address such as 192.0.2.1") from None


def make_packet(
    *, hook: str, proto: str, src: str, dst: str, dport: int | None, sport: int | None = None,
    iif: str | None = None, oif: str | None = None,
) -> Packet:  # fmt: skip
    if hook not in HOOKS:
        raise InputError(f"bad hook {hook!r}; valid ones are: {', '.join(HOOKS)}")
    s, d = _addr(src, "source"), _addr(dst, "destination")
    if s.version != d.version:
        raise TargetError(f"source {src} and destination {dst} are of different IP versions")
    proto = proto.lower()
    if proto == "ipv6-icmp":
        proto = "icmpv6"
    if proto in ("tcp", "udp", "sctp", "udplite", "dccp"):
        if dport is None:
            raise InputError(f"--dport is needed for protocol {proto}")
    elif proto not in ("icmp", "icmpv6") and not proto.isdigit():
        raise InputError(f"bad protocol {proto!r}; valid ones are: tcp, udp, sctp, icmp, icmpv6 or a number")
    for name, port in (("dport", dport), ("sport", sport)):
        if port is not None and not 0 <= port <= 65535:
            raise InputError(f"bad {name} {port}; ports are 0-65535")
    return Packet(hook, proto, s, d, dport, sport, iif, oif)


def check_packet(
    *,
    hook: str,
    proto: str,
    src: str,
    dst: str,
    dport: int | None,
    sport: int | None = None,
    iif: str | None = None,
    oif: str | None = None,
    netns: str | None = None,
    ruleset: NftRuleset | Mapping[str, Any] | None = None,
    policy_file: str | None = None,
    local_addresses: frozenset[IPAddress] | None = None,
) -> FwCheckResult:
    """The verdict for one packet of a new connection, and the rule that decided it.

    Against the live ruleset of ``netns`` (default), a given ``ruleset`` (a model or the
    ``nft -j`` dict), or a policy file. Missing interfaces are filled in from the routing
    table when the live ruleset is used.
    """
    pkt = make_packet(hook=hook, proto=proto, src=src, dst=dst, dport=dport, sport=sport, iif=iif, oif=oif)
    if policy_file is not None:
        return evaluate_policy(load_policy_file(policy_file), pkt)
    route = None
    if ruleset is None:
        rs = live_ruleset(netns=netns)
        if local_addresses is None:
            local_addresses = _local_addresses(netns)
        pkt = _fill_interfaces(pkt, netns, local_addresses)

        def route(addr: IPAddress) -> str | None:
            return nftb.route_dev(str(addr), netns=netns)
    else:
        rs = ruleset if isinstance(ruleset, NftRuleset) else parse_ruleset(ruleset)
    return Evaluator(rs, local_addresses=local_addresses, route=route).evaluate(pkt)


def _fill_interfaces(pkt: Packet, netns: str | None, local: frozenset[IPAddress]) -> Packet:
    iif, oif = pkt.iif, pkt.oif
    if iif is None and pkt.hook in ("in", "forward"):
        iif = "lo" if pkt.src in local or pkt.src.is_loopback else nftb.route_dev(str(pkt.src), netns=netns)
    if oif is None and pkt.hook in ("out", "forward"):
        oif = "lo" if pkt.dst in local or pkt.dst.is_loopback else nftb.route_dev(str(pkt.dst), netns=netns)
    if (iif, oif) == (pkt.iif, pkt.oif):
        return pkt
    return Packet(pkt.hook, pkt.proto, pkt.src, pkt.dst, pkt.dport, pkt.sport, iif, oif, pkt.icmp_type)


def dnat_published(*, netns: str | None = None, ruleset: NftRuleset | None = None) -> tuple[DnatEntry, ...]:
    """DNAT/redirect rules of nat prerouting chains (Docker's published ports, kernel forwards)."""
    return list_dnat(ruleset if ruleset is not None else live_ruleset(netns=netns))


# --------------------------------------------------------------------------- show


def show_ruleset(*, netns: str | None = None, ruleset: NftRuleset | None = None) -> RulesetView:
    rs = ruleset if ruleset is not None else live_ruleset(netns=netns)
    return ruleset_view(rs)


# --------------------------------------------------------------------------- host report


OUTSIDE = {4: "192.0.2.1", 6: "2001:db8::1"}


def annotate_inbound(table: SocketTable, *, netns: str | None = None, source: str | None = None) -> SocketTable:
    """Fill ``inbound``/``inbound_rule`` of listening sockets: would a new connection from
    outside (``source``, default 192.0.2.1 / 2001:db8::1, arriving on the interface of the
    default route) pass the live ruleset? Drops the "exposed" note of ports the firewall
    blocks, and adds DNAT-published ports without a local listener as ``FORWARDED`` rows
    (``remote_address``/``remote_port`` = the target). Without privilege to read the
    ruleset, the table comes back unchanged (inbound stays null)."""
    from dataclasses import replace

    from portkit.model.sockets import SocketEntry

    try:
        rs = live_ruleset(netns=netns)
    except (PrivilegeError, SystemRefused, InputError):
        return table
    src_override = _addr(source, "--from") if source is not None else None
    local = _local_addresses(netns)
    ev = Evaluator(rs, local_addresses=local, route=lambda a: nftb.route_dev(str(a), netns=netns))
    addrs = nftb.interface_addresses(netns=netns)
    devs = {fam: nftb.default_route_dev(family=fam, netns=netns) for fam in (4, 6)}

    def outside_packet(fam: int, proto: str, dst: str | None, port: int) -> Packet | None:
        dev = devs[fam]
        if dev is None:
            return None
        if dst is None or ipaddress.ip_address(dst).is_unspecified:
            dst = next((a for a in addrs.get(dev, []) if ipaddress.ip_address(a).version == fam and not ipaddress.ip_address(a).is_link_local), None)
            if dst is None:
                return None
        src = src_override if src_override is not None and src_override.version == fam else ipaddress.ip_address(OUTSIDE[fam])
        return Packet("in", proto, src, ipaddress.ip_address(dst), port, None, dev)

    def verdict(p: Packet | None) -> tuple[str | None, str | None]:
        if p is None:
            return None, None
        r = ev.evaluate(p)
        rule = None
        if r.decided_by is not None:
            rule = f"{r.decided_by.table} {r.decided_by.chain}: {r.decided_by.rule}"
        elif r.verdict == "accept":
            rule = "no firewall rule applies"
        if r.verdict == "unknown" and r.reason:
            rule = r.reason
        return r.verdict, rule

    out: list[SocketEntry] = []
    blocked_all: dict[tuple[int, str], bool] = {}
    listened: set[tuple[str, int]] = set()
    for e in table.sockets:
        if e.state not in ("LISTEN", "UNCONN") or e.exposure == "loopback":
            out.append(e)
            continue
        listened.add((e.proto, e.local_port))
        fam = 6 if e.family == "ipv6" else 4
        inbound, rule = verdict(outside_packet(fam, e.proto, e.local_address, e.local_port))
        if e.exposure == "all":
            key = (e.local_port, e.proto)
            blocked_all[key] = blocked_all.get(key, True) and inbound in ("drop", "reject")
        out.append(replace(e, inbound=inbound, inbound_rule=rule))
    for d in list_dnat(rs):
        proto = d.proto if d.proto in ("tcp", "udp") else "tcp"
        if d.dport is None or (proto, d.dport) in listened:
            continue
        try:
            fam = ipaddress.ip_address(d.target.address).version
        except ValueError:
            fam = 4
        inbound, rule = verdict(outside_packet(fam, proto, None, d.dport))
        out.append(SocketEntry(
            proto, f"ipv{fam}", "0.0.0.0" if fam == 4 else "::", d.dport, d.target.address, d.target.port,
            "FORWARDED", None, None, None, (), None, _port_class(d.dport), "all", inbound,
            rule or f"{d.table} {d.chain}: {d.rule}",
        ))  # fmt: skip
    notes = tuple(n for n in table.notes if not (n.code == "exposed-sensitive" and blocked_all.get((n.port, n.proto))))
    return replace(table, sockets=tuple(out), notes=notes)


def _port_class(port: int) -> str:
    try:
        from portkit.registry.ports import port_class

        return str(port_class(port))
    except ImportError:
        return "well-known" if port < 1024 else "registered" if port < 49152 else "dynamic"


# The apply side lives in its own module; re-exported here as part of this domain's API.
from portkit.ops.firewall_apply import (  # noqa: E402
    UNIT_DIR,
    UNIT_NAME,
    apply_policy,
    check_file_mode,
    compile_policy_file,
    confirm_apply,
    disable_boot,
    enable_boot,
    firewall_status,
    forget_state,
    reset_firewall,
    ssh_lockout,
    unit_text,
)

__all__ += ["UNIT_DIR", "UNIT_NAME", "check_file_mode", "forget_state", "ssh_lockout", "unit_text"]
