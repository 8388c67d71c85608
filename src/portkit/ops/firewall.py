"""portkit.api functions for the firewall domain: policy edits, check, compile, apply, show.

Every function that touches the kernel takes ``netns`` (an ``ip netns`` name) so tests and
labs work inside namespaces only. Policy files default to /etc/portkit/policy.yaml; one
that does not exist yet reads as the defaults (inbound deny, outbound allow).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import stat
import tempfile
from collections.abc import Mapping
from typing import Any

from portkit.backends import nft as nftb
from portkit.backends import rollback
from portkit.engine import nftcompile
from portkit.engine.nfteval import Evaluator, list_dnat
from portkit.engine.nftview import ruleset_view
from portkit.engine.policy import add_rule, delete_rule, evaluate_policy, shadowed_rules
from portkit.errors import FileFormatError, InputError, PrivilegeError, SystemRefused, TargetError
from portkit.model.firewall import (
    HOOKS,
    ApplyResult,
    DnatEntry,
    FwCheckResult,
    FwStatus,
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

DEFAULT_POLICY = "/etc/portkit/policy.yaml"
STATE_DIR = os.environ.get("PORTKIT_RUN_DIR", "/run/portkit") + "/firewall"
CACHE_DIR = os.environ.get("PORTKIT_RUN_DIR", "/run/portkit") + "/cache"
UNIT_NAME = "portkit-firewall.service"
UNIT_DIR = "/etc/systemd/system"


# --------------------------------------------------------------------------- policy files


def _services() -> Mapping[tuple[str, str], int]:
    """{(name, proto): port} from the inspect domain's registry (/etc/services)."""
    try:
        from portkit.backends.services import service_db
    except ImportError:  # the registry is not there: read /etc/services ourselves
        from portkit.parse.policy_yaml import parse_services

        try:
            with open("/etc/services") as f:
                return parse_services(f.read())
        except OSError:
            return {}
    out: dict[tuple[str, str], int] = {}
    for rec in service_db().etc:
        for name in (rec.name, *rec.aliases):
            out.setdefault((name.lower(), rec.proto), rec.port)
    return out


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
    key = nftb.ruleset_generation(netns=netns) if cache else None
    path = os.path.join(CACHE_DIR, f"ruleset-{key[0]}-{key[1]}.pickle") if key else None
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
        for old in olds[:-16]:
            os.unlink(old)
    except OSError:
        pass  # a cache that cannot be written only costs time


def _local_addresses(netns: str | None) -> frozenset[IPAddress]:
    out: set[IPAddress] = set()
    for addrs in nftb.interface_addresses(netns=netns).values():
        for a in addrs:
            with contextlib.suppress(ValueError):
                out.add(ipaddress.ip_address(a.split("%")[0]))
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


# --------------------------------------------------------------------------- compile and apply


def compile_policy_file(path: str = DEFAULT_POLICY) -> str:
    return nftcompile.compile_policy(load_policy_file(path), source=path)


def check_file_mode(path: str) -> None:
    """Refuse a policy file others may write (as sshd refuses loose key files)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except PermissionError as exc:
        raise PrivilegeError(f"cannot read policy file {path}: {exc.strerror}") from exc
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise InputError(
            f"refusing policy file {path}: mode {mode:04o} lets users other than its owner and root write it",
            hint=f"chmod go-w {path}",
        )


def ssh_lockout(policy: Policy, ssh_connection: str | None) -> str | None:
    """A reason to refuse when the policy would not let this SSH session's port in again."""
    if not ssh_connection:
        return None
    parts = ssh_connection.split()
    if len(parts) != 4:
        return None
    client, _cport, server, sport = parts
    try:
        pkt = make_packet(hook="in", proto="tcp", src=client.split("%")[0], dst=server.split("%")[0], dport=int(sport))
    except (InputError, ValueError):
        return None
    result = evaluate_policy(policy, pkt)
    if result.verdict == "accept":
        return None
    return (
        f"this SSH session ({client} -> {server} port {sport}) would be locked out: the policy says "
        f"{result.verdict} ({result.decided_by.rule if result.decided_by else 'default'})"
    )


def _state_name(netns: str | None) -> str:
    return f"firewall-{netns}" if netns else "firewall-host"


def apply_policy(
    path: str = DEFAULT_POLICY,
    *,
    netns: str | None = None,
    confirm: float | None = None,
    force: bool = False,
    ssh_connection: str | None = None,
) -> ApplyResult:
    """Load the policy as table ``inet portkit`` in one transaction; keep the previous table.

    ``ssh_connection`` defaults to $SSH_CONNECTION for the host (not inside a namespace).
    With ``confirm`` seconds, the previous table comes back unless :func:`confirm_apply`.
    """
    check_file_mode(path)
    policy = load_policy_file(path)
    if ssh_connection is None and netns is None:
        ssh_connection = os.environ.get("SSH_CONNECTION")
    if not force:
        reason = ssh_lockout(policy, ssh_connection)
        if reason:
            raise InputError(reason, hint="add a rule allowing it, or use --force")
    script = nftcompile.compile_policy(policy, source=path)
    nftb.load_script(script, netns=netns, check_only=True)
    previous = nftb.list_table_text(nftcompile.FAMILY, nftcompile.TABLE, netns=netns)
    saved = _keep(f"{_state_name(netns)}.previous.nft", nftcompile.restore_script(previous))
    deadline = None
    if confirm is not None:
        st = rollback.arm(_state_name(netns), nftcompile.restore_script(previous), confirm, netns=netns)
        deadline = st.deadline
    try:
        nftb.load_script(script, netns=netns)
    except Exception:
        if confirm is not None:
            rollback.confirm(_state_name(netns))
        raise
    _keep(f"{_state_name(netns)}.applied.sha256", hashlib.sha256(script.encode()).hexdigest())
    rules = sum(1 for ln in script.splitlines() if ln.startswith("\t\t") and not ln.startswith("\t\ttype "))
    return ApplyResult(True, netns, "inet portkit", rules, saved, deadline, shadowed_rules(policy))


def _keep(name: str, text: str) -> str | None:
    try:
        os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
        p = os.path.join(STATE_DIR, name)
        with open(p, "w") as f:
            f.write(text)
        return p
    except OSError:
        return None


def confirm_apply(*, netns: str | None = None) -> bool:
    """Keep the applied rules: disarm the rollback timer. False if none was pending."""
    return rollback.confirm(_state_name(netns))


def reset_firewall(*, netns: str | None = None) -> bool:
    """Remove table ``inet portkit`` (only it). False if it was not loaded."""
    rollback.confirm(_state_name(netns))
    if nftb.list_table_text(nftcompile.FAMILY, nftcompile.TABLE, netns=netns) is None:
        return False
    nftb.load_script(f"delete table {nftcompile.FAMILY} {nftcompile.TABLE}\n", netns=netns)
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(STATE_DIR, f"{_state_name(netns)}.applied.sha256"))
    return True


def firewall_status(path: str = DEFAULT_POLICY, *, netns: str | None = None, unit_dir: str = UNIT_DIR) -> FwStatus:
    text = nftb.list_table_text(nftcompile.FAMILY, nftcompile.TABLE, netns=netns)
    rules = 0
    if text is not None:
        rules = sum(1 for ln in text.splitlines() if ln.startswith("\t\t") and not ln.strip().startswith("type "))
    in_sync: bool | None = None
    if text is not None:
        try:
            want = hashlib.sha256(compile_policy_file(path).encode()).hexdigest()
            with open(os.path.join(STATE_DIR, f"{_state_name(netns)}.applied.sha256")) as f:
                in_sync = f.read().strip() == want
        except (OSError, FileFormatError):
            in_sync = None
    rb = rollback.status(_state_name(netns))
    return FwStatus(
        netns=netns,
        active=text is not None,
        rules=rules,
        policy_file=path,
        in_sync=in_sync,
        pending_rollback=rb.armed,
        rollback_seconds_left=rb.seconds_left,
        last_rollback=rb.last_result,
        boot_unit=os.path.exists(os.path.join(unit_dir, UNIT_NAME)),
    )


# --------------------------------------------------------------------------- boot unit


def unit_text(path: str) -> str:
    """contrib/systemd/portkit-firewall.service with the policy path filled in."""
    here = os.path.dirname(os.path.abspath(__file__))
    contrib = os.path.join(here, "..", "..", "..", "contrib", "systemd", UNIT_NAME)
    with open(contrib) as f:
        template = f.read()
    return template.replace("/etc/portkit/policy.yaml", path)


def enable_boot(path: str = DEFAULT_POLICY, *, unit_dir: str = UNIT_DIR, systemctl: bool = True) -> str:
    """Install the unit that applies ``path`` at boot; returns the unit's path."""
    check_file_mode(path)
    load_policy_file(path)
    target = os.path.join(unit_dir, UNIT_NAME)
    try:
        os.makedirs(unit_dir, exist_ok=True)
        with open(target, "w") as f:
            f.write(unit_text(os.path.abspath(path)))
    except PermissionError as exc:
        raise PrivilegeError(f"cannot write {target}: {exc.strerror}") from exc
    if systemctl:
        _systemctl("daemon-reload")
        _systemctl("enable", UNIT_NAME)
    return target


def disable_boot(*, unit_dir: str = UNIT_DIR, systemctl: bool = True) -> bool:
    target = os.path.join(unit_dir, UNIT_NAME)
    if not os.path.exists(target):
        return False
    if systemctl:
        _systemctl("disable", UNIT_NAME)
    try:
        os.unlink(target)
    except PermissionError as exc:
        raise PrivilegeError(f"cannot remove {target}: {exc.strerror}") from exc
    if systemctl:
        _systemctl("daemon-reload")
    return True


def _systemctl(*args: str) -> None:
    import shutil
    import subprocess

    exe = shutil.which("systemctl")
    if exe is None:
        return  # no systemd here: the unit file is in place for when there is
    proc = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0 and "offline" not in proc.stderr and "not been booted" not in proc.stderr:
        raise SystemRefused(f"systemctl {' '.join(args)} failed: {proc.stderr.strip()[:200]}")


# --------------------------------------------------------------------------- show


def show_ruleset(*, netns: str | None = None, ruleset: NftRuleset | None = None) -> RulesetView:
    rs = ruleset if ruleset is not None else live_ruleset(netns=netns)
    return ruleset_view(rs)
