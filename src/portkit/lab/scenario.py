"""Load and validate a lab scenario (YAML file, YAML text or dict) into a :class:`Scenario`.

Theory of operation: the YAML is *composed* (not constructed) so every node keeps its
start mark; :func:`_to_plain` turns the node tree into plain dicts/lists while recording
the line of each value under its path (``("hosts", "client", "services", 0, "listen")``).
Validation then walks the plain data and, on the first problem, raises one
:class:`FileFormatError` naming the file, the line of the offending value and what would
be valid. Nothing is created before validation has passed.

The lab never reaches beyond itself: addresses must lie in private or documentation
ranges, gateways must be addresses of other lab hosts on a shared link, and routed
destinations must be ``default`` or lie inside those ranges.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from portkit.backends.files import read_user_file
from portkit.errors import FileFormatError, InputError
from portkit.model.lab import Host, Link, LinkEnd, Masquerade, PortForward, Route, Scenario, Service

PathKey = tuple[str | int, ...]

ALLOWED_NETS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "fc00::/7",
        "2001:db8::/32",
    )
)
ALLOWED_TEXT = (
    "10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7 or the documentation ranges "
    "192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32"
)

TOP_KEYS = ("name", "description", "hosts", "links")
HOST_KEYS = ("routes", "forward", "nat", "services", "firewall")
LINK_KEYS = ("name", "ends", "bridge")
ROUTE_KEYS = ("to", "via")
SERVICE_KEYS = ("proto", "listen", "kind", "banner", "v6only")
NAT_KEYS = ("masquerade", "forwards")
MASQ_KEYS = ("oif", "family")
FWD_KEYS = ("proto", "port", "to", "iif")
KINDS = ("echo", "http", "banner", "silent")
PROTOS = ("tcp", "udp")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_IFNAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
MAX_LAB_NAME = 40
MAX_HOST_NAME = 30


class _Ctx:
    """The source name and line map used to place error messages."""

    def __init__(self, source: str, lines: dict[PathKey, int]) -> None:
        self.source = source
        self.lines = lines

    def line(self, path: PathKey) -> int | None:
        p = path
        while True:
            if p in self.lines:
                return self.lines[p]
            if not p:
                return None
            p = p[:-1]

    def fail(self, path: PathKey, problem: str) -> FileFormatError:
        where = ".".join(str(x) for x in path)
        msg = f"{where}: {problem}" if where else problem
        return FileFormatError(self.source, msg, line=self.line(path))


# --- YAML with line numbers ---------------------------------------------------------


def _to_plain(node: Any, path: PathKey, lines: dict[PathKey, int], source: str) -> Any:
    import yaml

    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = _to_plain(knode, (*path, "<key>"), {}, source)
            if not isinstance(key, str | int):
                raise FileFormatError(source, f"a mapping key must be a name, not {key!r}", line=knode.start_mark.line + 1)
            if key in out:
                raise FileFormatError(source, f"duplicate key {key!r}", line=knode.start_mark.line + 1)
            out[key] = _to_plain(vnode, (*path, str(key)), lines, source)
            lines[(*path, str(key))] = knode.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_plain(v, (*path, i), lines, source) for i, v in enumerate(node.value)]
    # A scalar: let the safe constructor give it its YAML type (int, bool, null, str).
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise FileFormatError(source, f"bad value: {exc}", line=node.start_mark.line + 1) from exc
    except (ValueError, OverflowError) as exc:  # a 5,000-digit int, a date with month 13
        raise FileFormatError(
            source, f"bad value {str(node.value)[:40]!r}: {str(exc).split(';')[0]}", line=node.start_mark.line + 1
        ) from None
    finally:
        loader.dispose()


def load_yaml(text: str, source: str) -> tuple[Any, dict[PathKey, int]]:
    import yaml

    from portkit.parse.yamltext import compose

    node = compose(text, source, getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if node is None:
        raise FileFormatError(source, "the file is empty; a scenario needs 'hosts:' and 'links:'")
    lines: dict[PathKey, int] = {}
    return _to_plain(node, (), lines, source), lines


def examples_dir() -> Path:
    """examples/labs of the source tree (src/portkit/lab -> repo root)."""
    return Path(__file__).resolve().parents[3] / "examples" / "labs"


def load(scenario: Mapping[str, Any] | str | os.PathLike[str], *, default_name: str | None = None) -> Scenario:
    """A validated Scenario from a dict, a YAML file path, YAML text, or a shipped example name.

    A scenario without ``name:`` is named ``default_name``, else after its file's stem.
    """
    if isinstance(scenario, Mapping):
        return validate(dict(scenario), {}, "<dict>", default_name=default_name)
    text_in = os.fspath(scenario)
    if isinstance(scenario, str) and "\n" in scenario:
        data, lines = load_yaml(scenario, "<yaml>")
        return validate(data, lines, "<yaml>", default_name=default_name)
    path = Path(text_in)
    if not path.exists() and not path.suffix:
        candidate = examples_dir() / f"{text_in}.yaml"
        if candidate.exists():
            path = candidate
    text = read_user_file(str(path), "scenario file", missing_ok=True)
    if text is None:
        raise InputError(f"no scenario file {text_in!r}", hint=f"shipped ones are in {examples_dir()}")
    data, lines = load_yaml(text, str(path))
    return validate(data, lines, str(path), default_name=default_name or path.stem)


# --- validation -------------------------------------------------------------------


def _keys(ctx: _Ctx, value: Any, path: PathKey, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.fail(path, f"{what} must be a mapping, not {type(value).__name__}")
    for k in value:
        if k not in allowed:
            close = difflib.get_close_matches(str(k), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ctx.fail((*path, str(k)), f"unknown key {k!r} in {what}; {hint}valid keys are: {', '.join(allowed)}")
    return value


def _list(ctx: _Ctx, value: Any, path: PathKey, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ctx.fail(path, f"{what} must be a list")
    return value


def _str(ctx: _Ctx, value: Any, path: PathKey, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ctx.fail(path, f"{what} must be a non-empty string, not {value!r}")
    return value


def _port(ctx: _Ctx, value: Any, path: PathKey) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ctx.fail(path, f"port {value!r} is not a number; a port is 1-65535")
    try:
        port = int(value)
    except ValueError:
        raise ctx.fail(path, f"port {value!r} is not a number; a port is 1-65535") from None
    if not 1 <= port <= 65535:
        raise ctx.fail(path, f"port {port} is out of range; a port is 1-65535")
    return port


def _choice(ctx: _Ctx, value: Any, path: PathKey, what: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ctx.fail(path, f"invalid {what} {value!r}; valid ones are: {', '.join(choices)}")
    return str(value)


def _allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip.version == n.version and ip in n for n in ALLOWED_NETS)


def split_hostport(ctx: _Ctx, text: Any, path: PathKey, *, port_required: bool = True) -> tuple[str, int | None]:
    """``1.2.3.4:80``, ``[::]:80``, ``1.2.3.4``/``fd00::2`` (when the port may be omitted)."""
    if isinstance(text, int):
        raise ctx.fail(path, f"{text!r} needs an address: write it as ADDRESS:PORT, e.g. 0.0.0.0:{text}")
    s = _str(ctx, text, path, "an address")
    port_text: str | None
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ctx.fail(path, f"bad address {s!r}; write IPv6 as [ADDRESS]:PORT")
        port_text = rest[1:] if rest else None
    elif s.count(":") == 1:
        host, _, port_text = s.partition(":")
    else:
        host, port_text = s, None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        v6 = "; write IPv6 as [ADDRESS]:PORT" if host.count(":") > 1 else ""
        raise ctx.fail(path, f"{host!r} is not an IP address (lab addresses are literal){v6}") from None
    if port_text is None:
        if port_required:
            raise ctx.fail(path, f"{s!r} has no port; write ADDRESS:PORT, or [ADDRESS]:PORT for IPv6")
        return str(ip), None
    return str(ip), _port(ctx, port_text, path)


def _check_overlaps(ctx: _Ctx, path: PathKey, services: list[Service]) -> None:
    """TCP listeners of one host must not overlap: the kernel refuses 10.0.0.1:80 next to
    0.0.0.0:80 (or next to a dual-stack [::]:80) even with SO_REUSEADDR. UDP allows it with
    SO_REUSEADDR, which the runner sets. [::] is v6-only when the port also has an IPv4
    service and v6only is not given (the runner's rule)."""
    v4_ports = {(s.proto, s.port) for s in services if ":" not in s.address}

    def covers(w: Service, x: Service) -> bool:
        if w.address == "0.0.0.0":
            return ":" not in x.address
        if w.address == "::":
            v6only = w.v6only if w.v6only is not None else (w.proto, w.port) in v4_ports
            return ":" in x.address or not v6only
        return False

    for i, s in enumerate(services):
        for j, o in enumerate(services[:i]):
            if s.proto == o.proto == "tcp" and s.port == o.port and (covers(o, s) or covers(s, o)):
                raise ctx.fail(
                    (*path, "services", i, "listen"),
                    f"service tcp {_hp(s.address, s.port)} overlaps services.{j} (tcp {_hp(o.address, o.port)}): "
                    "a wildcard bind takes the port on every address of its family; drop one, or bind both to "
                    "specific addresses",
                )


def _hp(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def validate(data: Any, lines: dict[PathKey, int], source: str, *, default_name: str | None) -> Scenario:
    ctx = _Ctx(source, lines)
    top = _keys(ctx, data, (), TOP_KEYS, "the scenario")
    name = top.get("name", default_name)
    if name is None:
        raise ctx.fail(("name",), "the scenario needs a 'name:'")
    name = _str(ctx, name, ("name",), "name")
    if not _NAME_RE.match(name) or len(name) > MAX_LAB_NAME:
        if "name" not in top:
            raise ctx.fail(
                (),
                f"the file name gives the lab name {name!r}, which is not valid; add a 'name:' "
                f"of up to {MAX_LAB_NAME} of a-z, 0-9 and '-'",
            )
        raise ctx.fail(("name",), f"invalid lab name {name!r}; use up to {MAX_LAB_NAME} of a-z, 0-9 and '-'")
    hosts_raw = top.get("hosts")
    if not isinstance(hosts_raw, dict) or not hosts_raw:
        raise ctx.fail(("hosts",), "the scenario needs 'hosts:', a mapping of host names")
    for h in hosts_raw:
        if not isinstance(h, str) or not _NAME_RE.match(h) or len(h) > MAX_HOST_NAME:
            raise ctx.fail(("hosts", str(h)), f"invalid host name {h!r}; use up to {MAX_HOST_NAME} of a-z, 0-9 and '-'")
    links = _links(ctx, top.get("links"), set(hosts_raw))
    # Every address of the lab -> (host, link, interface network): used to check gateways and targets.
    owner: dict[str, tuple[str, str]] = {}
    nets: dict[str, list[tuple[str, ipaddress.IPv4Interface | ipaddress.IPv6Interface]]] = {h: [] for h in hosts_raw}
    for li, link in enumerate(links):
        for end in link.ends:
            for ai, cidr in enumerate(end.addresses):
                iface = ipaddress.ip_interface(cidr)
                key = str(iface.ip)
                if key in owner:
                    other = owner[key]
                    raise ctx.fail(
                        ("links", li, "ends", end.host, ai),
                        f"duplicate address {key}: already given to host {other[0]!r} on link {other[1]!r}",
                    )
                owner[key] = (end.host, link.name)
                nets[end.host].append((link.name, iface))
    hosts = tuple(
        _host(ctx, str(h), hosts_raw[h], owner, nets) for h in hosts_raw
    )
    return Scenario(name=name, hosts=hosts, links=links, source=source)


def _links(ctx: _Ctx, raw: Any, hosts: set[str]) -> tuple[Link, ...]:
    out: list[Link] = []
    seen: set[str] = set()
    for i, item in enumerate(_list(ctx, raw, ("links",), "links")):
        path: PathKey = ("links", i)
        d = _keys(ctx, item, path, LINK_KEYS, "a link")
        lname = _str(ctx, d.get("name"), (*path, "name"), "a link's name")
        if not _IFNAME_RE.match(lname) or len(lname) > 15 or lname == "lo":
            raise ctx.fail((*path, "name"), f"invalid link name {lname!r}; it names the interface: up to 15 of a-z, 0-9, '-', '_'")
        if lname in seen:
            raise ctx.fail((*path, "name"), f"duplicate link name {lname!r}")
        seen.add(lname)
        bridge = d.get("bridge", False)
        if not isinstance(bridge, bool):
            raise ctx.fail((*path, "bridge"), f"bridge must be true or false, not {bridge!r}")
        ends_raw = d.get("ends")
        if not isinstance(ends_raw, dict) or not ends_raw:
            raise ctx.fail((*path, "ends"), "a link needs 'ends:', a mapping of host -> [addresses]")
        ends: list[LinkEnd] = []
        for h, addrs in ends_raw.items():
            epath: PathKey = (*path, "ends", str(h))
            if h not in hosts:
                raise ctx.fail(epath, f"unknown host {h!r} in link {lname!r}; hosts are: {', '.join(sorted(hosts))}")
            cidrs: list[str] = []
            for ai, a in enumerate(_list(ctx, addrs, epath, "a link end's addresses")):
                cidrs.append(_cidr(ctx, a, (*epath, ai)))
            ends.append(LinkEnd(host=str(h), addresses=tuple(cidrs)))
        if not bridge and len(ends) != 2:
            raise ctx.fail((*path, "ends"), f"link {lname!r} has {len(ends)} ends; a veth link joins exactly 2 hosts (set 'bridge: true' for a shared segment)")
        out.append(Link(name=lname, ends=tuple(ends), bridge=bridge))
    return tuple(out)


def _cidr(ctx: _Ctx, value: Any, path: PathKey) -> str:
    s = _str(ctx, value, path, "an address")
    if "/" not in s:
        raise ctx.fail(path, f"address {s!r} needs a prefix length, e.g. {s}/24 or {s}/64")
    try:
        iface = ipaddress.ip_interface(s)
    except ValueError:
        raise ctx.fail(path, f"{s!r} is not an address with a prefix (like 10.0.1.2/24 or fd00:1::2/64)") from None
    if not _allowed(iface.ip):
        raise ctx.fail(path, f"address {iface.ip} is not private; lab addresses must be in {ALLOWED_TEXT}")
    if iface.version == 4 and iface.network.prefixlen < 31 and iface.ip in (
        iface.network.network_address,
        iface.network.broadcast_address,
    ):
        raise ctx.fail(path, f"address {iface.ip} is the network or broadcast address of {iface.network}")
    return str(iface)


def _host(
    ctx: _Ctx,
    name: str,
    raw: Any,
    owner: dict[str, tuple[str, str]],
    nets: dict[str, list[tuple[str, ipaddress.IPv4Interface | ipaddress.IPv6Interface]]],
) -> Host:
    path: PathKey = ("hosts", name)
    d = _keys(ctx, raw, path, HOST_KEYS, f"host {name!r}")
    my_links = {ln for ln, _ in nets[name]}
    my_ips = {str(i.ip) for _, i in nets[name]}
    forward = d.get("forward", False)
    if not isinstance(forward, bool):
        raise ctx.fail((*path, "forward"), f"forward must be true or false, not {forward!r}")
    routes: list[Route] = []
    for i, r in enumerate(_list(ctx, d.get("routes"), (*path, "routes"), "routes")):
        rp: PathKey = (*path, "routes", i)
        rd = _keys(ctx, r, rp, ROUTE_KEYS, "a route")
        via_ip = split_hostport(ctx, rd.get("via"), (*rp, "via"), port_required=False)[0]
        via = ipaddress.ip_address(via_ip)
        if via_ip not in owner or owner[via_ip][0] == name:
            raise ctx.fail((*rp, "via"), f"gateway {via_ip} is not an address of another host in this lab; a lab routes only to itself")
        if not any(i2.version == via.version and via in i2.network for _, i2 in nets[name]):
            raise ctx.fail((*rp, "via"), f"gateway {via_ip} is not on any link of host {name!r}")
        to = rd.get("to")
        if to == "default":
            to_s = "default"
        else:
            s = _str(ctx, to, (*rp, "to"), "a route's 'to'")
            try:
                net = ipaddress.ip_network(s, strict=False)
            except ValueError:
                raise ctx.fail((*rp, "to"), f"{s!r} is neither 'default' nor a network like 10.0.2.0/24") from None
            if net.version != via.version:
                raise ctx.fail((*rp, "to"), f"{s} and gateway {via_ip} are of different IP versions")
            if not any(net.version == n.version and net.subnet_of(n) for n in ALLOWED_NETS):  # type: ignore[arg-type]
                raise ctx.fail((*rp, "to"), f"route to {net} leads outside the lab; destinations must be in {ALLOWED_TEXT}")
            to_s = str(net)
        routes.append(Route(to=to_s, via=via_ip, family=via.version))
    services: list[Service] = []
    seen: dict[tuple[str, str, int], int] = {}
    for i, s in enumerate(_list(ctx, d.get("services"), (*path, "services"), "services")):
        sp: PathKey = (*path, "services", i)
        sd = _keys(ctx, s, sp, SERVICE_KEYS, "a service")
        proto = _choice(ctx, sd.get("proto", "tcp"), (*sp, "proto"), "proto", PROTOS)
        addr, port = split_hostport(ctx, sd.get("listen"), (*sp, "listen"))
        assert port is not None
        if addr not in ("0.0.0.0", "::", "127.0.0.1", "::1") and addr not in my_ips:
            raise ctx.fail((*sp, "listen"), f"host {name!r} has no address {addr}; listen on 0.0.0.0, ::, 127.0.0.1, ::1 or one of: {', '.join(sorted(my_ips)) or 'none'}")
        kind = _choice(ctx, sd.get("kind", "echo"), (*sp, "kind"), "kind", KINDS)
        if kind == "http" and proto == "udp":
            raise ctx.fail((*sp, "kind"), "kind 'http' is TCP only; for UDP use echo, banner or silent")
        banner = sd.get("banner", "")
        if not isinstance(banner, str | int | float):
            raise ctx.fail((*sp, "banner"), "banner must be a line of text")
        banner = str(banner)
        if kind == "banner" and not banner:
            banner = "SSH-2.0-portkit_lab"
        v6only = sd.get("v6only")
        if v6only is not None and not isinstance(v6only, bool):
            raise ctx.fail((*sp, "v6only"), f"v6only must be true or false, not {v6only!r}")
        key = (proto, addr, port)
        if key in seen:
            raise ctx.fail((*sp, "listen"), f"service {proto} {addr}:{port} is already defined (services.{seen[key]})")
        seen[key] = i
        services.append(Service(proto=proto, address=addr, port=port, kind=kind, banner=banner, v6only=v6only))
    _check_overlaps(ctx, path, services)
    firewall = d.get("firewall") or ""
    if not isinstance(firewall, str):
        raise ctx.fail((*path, "firewall"), "firewall must be nftables text (use a YAML block: 'firewall: |')")
    nat = _keys(ctx, d.get("nat"), (*path, "nat"), NAT_KEYS, "nat")
    masq: list[Masquerade] = []
    for i, m in enumerate(_list(ctx, nat.get("masquerade"), (*path, "nat", "masquerade"), "masquerade")):
        mp: PathKey = (*path, "nat", "masquerade", i)
        md = _keys(ctx, m, mp, MASQ_KEYS, "a masquerade")
        oif = _str(ctx, md.get("oif"), (*mp, "oif"), "oif")
        if oif not in my_links:
            raise ctx.fail((*mp, "oif"), f"host {name!r} has no link {oif!r}; its links are: {', '.join(sorted(my_links)) or 'none'}")
        fam = md.get("family", 4)
        if fam not in (4, 6, 0):
            raise ctx.fail((*mp, "family"), f"invalid family {fam!r}; valid ones are: 4, 6, 0 (both)")
        masq.append(Masquerade(oif=oif, family=int(fam)))
    fwds: list[PortForward] = []
    for i, f in enumerate(_list(ctx, nat.get("forwards"), (*path, "nat", "forwards"), "forwards")):
        fp: PathKey = (*path, "nat", "forwards", i)
        fd = _keys(ctx, f, fp, FWD_KEYS, "a port forward")
        proto = _choice(ctx, fd.get("proto", "tcp"), (*fp, "proto"), "proto", PROTOS)
        port = _port(ctx, fd.get("port"), (*fp, "port"))
        to_addr, to_port = split_hostport(ctx, fd.get("to"), (*fp, "to"), port_required=False)
        if to_addr not in owner:
            raise ctx.fail((*fp, "to"), f"forward target {to_addr} is not an address of this lab; a lab forwards only to itself")
        iif = fd.get("iif")
        if iif is not None and iif not in my_links:
            raise ctx.fail((*fp, "iif"), f"host {name!r} has no link {iif!r}; its links are: {', '.join(sorted(my_links)) or 'none'}")
        fwds.append(PortForward(proto=proto, port=port, to_address=to_addr, to_port=to_port or port, iif=iif))
    return Host(
        name=name,
        forward=forward,
        routes=tuple(routes),
        services=tuple(services),
        firewall=firewall,
        masquerade=tuple(masq),
        forwards=tuple(fwds),
    )
