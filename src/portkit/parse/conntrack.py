"""Parse conntrack's text format into :class:`~portkit.model.nat.NatEntry` objects.

``/proc/net/nf_conntrack`` and ``conntrack -L -o extended`` print the same line format
(the tool adds ``id=`` with ``-o id``)::

    ipv4     2 tcp      6 431998 ESTABLISHED src=10.0.40.12 dst=203.0.113.10 sport=40000 dport=7 \
src=203.0.113.10 dst=203.0.113.1 sport=7 dport=65464 [ASSURED] mark=0 zone=0 use=2

that is: L3 name and number, L4 name and number, seconds left, an optional state word,
then the *original* tuple's ``key=value`` pairs, then the *reply* tuple's (a second
``src=`` starts it), with ``[FLAGS]`` and extra keys in between or after. Plain
``conntrack -L`` drops the two leading L3 fields; both layouts are accepted.

A flow is translated when its reply tuple is not the mirror of its original: the reply's
destination differs from the original source (source NAT; with another port, PAT) and/or
the reply's source differs from the original destination (destination NAT). Untranslated
flows are skipped. IPv6 addresses (printed in full in /proc) are compressed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from portkit.model.nat import NatEntry, NatTuple

_L3 = {"ipv4": 4, "ipv6": 6}
_PORTLESS_KEYS = ("type", "code", "id")


def _addr(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _tuple(pairs: dict[str, str]) -> NatTuple | None:
    if "src" not in pairs or "dst" not in pairs:
        return None
    sport = pairs.get("sport")
    dport = pairs.get("dport")
    return NatTuple(
        src=_addr(pairs["src"]),
        sport=int(sport) if sport is not None and sport.isdigit() else None,
        dst=_addr(pairs["dst"]),
        dport=int(dport) if dport is not None and dport.isdigit() else None,
    )


def parse_line(line: str) -> NatEntry | None:
    """One conntrack line -> NatEntry, or None when the flow is not translated (or unparsable)."""
    words = line.split()
    if len(words) < 4:
        return None
    family = 4
    if words[0] in _L3:
        family = _L3[words[0]]
        words = words[2:]
    if len(words) < 3 or not words[1].isdigit() or not words[2].isdigit():
        return None
    proto = words[0]
    timeout = int(words[2])
    rest = words[3:]
    state: str | None = None
    if rest and "=" not in rest[0] and not rest[0].startswith("["):
        state = rest[0]
        rest = rest[1:]
    orig: dict[str, str] = {}
    reply: dict[str, str] = {}
    flags: list[str] = []
    extra: dict[str, str] = {}
    cur = orig
    for w in rest:
        if w.startswith("[") and w.endswith("]"):
            flags.append(w[1:-1])
            continue
        key, sep, val = w.partition("=")
        if not sep:
            continue
        if key == "src" and "src" in orig and cur is orig:
            cur = reply
        if key in ("src", "dst", "sport", "dport", *_PORTLESS_KEYS) and (cur is reply or key not in cur):
            if cur is reply and key in reply:
                extra[key] = val
            else:
                cur[key] = val
        else:
            extra[key] = val
    o = _tuple(orig)
    r = _tuple(reply)
    if o is None or r is None:
        return None
    translated = NatTuple(src=r.dst, sport=r.dport, dst=r.src, dport=r.sport)
    snat = translated.src != o.src or translated.sport != o.sport
    dnat = translated.dst != o.dst or translated.dport != o.dport
    if not snat and not dnat:
        return None
    kind = "both" if snat and dnat else ("snat" if snat else "dnat")
    port_translated = translated.sport != o.sport or translated.dport != o.dport
    ident = extra.get("id")
    return NatEntry(
        proto=proto,
        state=state,
        kind=kind,
        port_translated=port_translated,
        original=o,
        translated=translated,
        timeout_s=timeout,
        family=family,
        flags=tuple(flags),
        conntrack_id=int(ident) if ident is not None and ident.isdigit() else None,
    )


def parse_table(text: str) -> tuple[NatEntry, ...]:
    """Every translated flow in ``text`` (the conntrack tool's summary line is ignored)."""
    return tuple(_iter(text.splitlines()))


def _iter(lines: Iterable[str]) -> Iterator[NatEntry]:
    for line in lines:
        if not line.strip() or line.startswith("conntrack v"):
            continue
        entry = parse_line(line)
        if entry is not None:
            yield entry


def format_line(e: NatEntry) -> str:
    """The inverse of :func:`parse_line` for translated flows (used by property tests)."""
    fam = "ipv6" if e.family == 6 else "ipv4"
    num = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132}.get(e.proto, 255)
    parts = [fam, "10" if e.family == 6 else "2", e.proto, str(num), str(e.timeout_s)]
    if e.state:
        parts.append(e.state)

    def tup(t: NatTuple) -> list[str]:
        out = [f"src={t.src}", f"dst={t.dst}"]
        if t.sport is not None:
            out.append(f"sport={t.sport}")
        if t.dport is not None:
            out.append(f"dport={t.dport}")
        return out

    tr = e.translated
    parts += tup(e.original)
    parts += tup(NatTuple(src=tr.dst, sport=tr.dport, dst=tr.src, dport=tr.sport))
    parts += [f"[{f}]" for f in e.flags]
    parts += ["mark=0", "use=1"]
    return " ".join(parts)


def matches(
    e: NatEntry, *, port: int | None = None, host: str | None = None, proto: str | None = None
) -> bool:
    """Filters of ``portkit nat``: any port / any address of either tuple; host may be a CIDR."""
    if proto is not None and e.proto != proto:
        return False
    if port is not None and port not in (
        e.original.sport,
        e.original.dport,
        e.translated.sport,
        e.translated.dport,
    ):
        return False
    if host is not None:
        addrs = {e.original.src, e.original.dst, e.translated.src, e.translated.dst}
        if "/" in host:
            net = ipaddress.ip_network(host, strict=False)
            if not any(_in(a, net) for a in addrs):
                return False
        elif _addr(host) not in addrs:
            return False
    return True


def _in(addr: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.version == net.version and ip in net
