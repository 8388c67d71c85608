"""Forward specifications: parse ``[BIND:]LPORT:THOST:TPORT[/tcp|/udp]`` and ``--config`` files.

Theory of operation: a SPEC is split on the colons that are *outside* square brackets, so
IPv6 literals stay whole (``[::1]:8080:[fd00::2]:80``). The number of fields picks the form:

    2  LPORT:TPORT                  listen on 127.0.0.1, target 127.0.0.1 (like ``ssh -L``)
    3  LPORT:THOST:TPORT            listen on 127.0.0.1
    4  BIND:LPORT:THOST:TPORT

Every error names the offending value and what would be valid, and is raised as a
:class:`~portkit.errors.InputError` subclass (exit status 2). A config file is YAML read
with PyYAML's BaseLoader (every scalar a string), so ``80:22`` is never turned into the
sexagesimal integer 4822 behind the user's back. Client filtering (``--allow``/``--deny``)
is decided here too: deny wins, then an empty allow list admits everyone.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Any

from portkit.engine.endpoint import (
    MAX_PORT_DIGITS,
    check_name,
    is_ascii_number,
    parse_address,
    parse_number,
    shown,
)
from portkit.errors import FileFormatError, InputError, PortSpecError, TargetError
from portkit.model.forward import ForwardConfig, ForwardOptions, ForwardSpec

FORMS = "[BIND:]LPORT:THOST:TPORT[/tcp|/udp] or LPORT:TPORT[/tcp|/udp]"
PROTOS = ("tcp", "udp")
DEFAULT_BIND = "127.0.0.1"
DEFAULT_TARGET = "127.0.0.1"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def split_fields(text: str) -> list[str]:
    """Split on ':' outside brackets; bracketed parts keep their brackets."""
    fields: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise TargetError(f"unbalanced ']' in {shown(text)!r}; IPv6 addresses go in brackets: [::1]")
        if ch == ":" and depth == 0:
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise TargetError(f"unbalanced '[' in {shown(text)!r}; IPv6 addresses go in brackets: [::1]")
    fields.append("".join(cur))
    return fields


def parse_port(text: str, what: str, spec: str) -> int:
    if not text:
        raise PortSpecError(f"missing {what} in {shown(spec)!r}; the forms are {FORMS}")
    if not is_ascii_number(text) or len(text) > MAX_PORT_DIGITS:
        raise PortSpecError(f"invalid {what} {shown(text)!r} in {shown(spec)!r}; a port is a number from 1 to 65535 (ASCII digits)")
    port = int(text)
    if not 1 <= port <= 65535:
        raise PortSpecError(f"{what} {port} in {shown(spec)!r} is out of range; valid ports are 1-65535")
    return port


def parse_host(text: str, what: str, spec: str, *, literal_only: bool = False) -> str:
    """An IPv4 literal, a bracketed IPv6 literal or (unless ``literal_only``) a host name."""
    if not text:
        raise TargetError(f"missing {what} in {shown(spec)!r}; the forms are {FORMS}")
    if text.startswith("["):
        if not text.endswith("]"):
            raise TargetError(f"invalid {what} {shown(text)!r} in {shown(spec)!r}; write IPv6 addresses as [fd00::2]")
        inner = text[1:-1]
        if ":" not in inner or parse_address(inner, what=what, where=f" in {shown(spec)!r}") is None:
            raise TargetError(f"invalid IPv6 {what} {shown(text)!r} in {shown(spec)!r}")
        return inner
    if "[" in text or "]" in text:
        raise TargetError(f"invalid {what} {shown(text)!r} in {shown(spec)!r}; write IPv6 addresses as [fd00::2]")
    if ":" not in text:
        v4 = parse_address(text, what=f"IPv4 {what}", where=f" in {shown(spec)!r}")
        if v4 is not None:
            return str(v4)
    if literal_only and text != "localhost":
        raise TargetError(
            f"invalid {what} {shown(text)!r} in {shown(spec)!r}; a bind address is an IP address like 0.0.0.0 or [::]"
        )
    if not _HOSTNAME.fullmatch(text):
        raise TargetError(f"invalid {what} {shown(text)!r} in {shown(spec)!r}; expected an IP address or a host name")
    check_name(text, what=what, where=f" in {shown(spec)!r}")
    if text == "localhost" and literal_only:
        return DEFAULT_BIND
    return text


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_spec(
    text: str,
    *,
    allow: Sequence[str] = (),
    deny: Sequence[str] = (),
    default_bind: str = DEFAULT_BIND,
) -> ForwardSpec:
    """Parse one SPEC. ``allow``/``deny`` are attached after validation as CIDR text.

    ``default_bind`` is the listen address of the short forms: 127.0.0.1 for the userspace
    forwarder (like ``ssh -L``); kernel forwards pass "0.0.0.0" (every local address).
    """
    spec = text.strip(" ")
    if not spec:
        raise InputError(f"empty forward SPEC; the forms are {FORMS}")
    if not spec.isascii() or not spec.isprintable():
        raise InputError(
            f"invalid forward SPEC {shown(spec)!r}: only ASCII letters, digits and ':[]./%-_' belong in it; "
            f"the forms are {FORMS}"
        )
    proto = "tcp"
    body = spec
    if "/" in spec:
        body, _, suffix = spec.rpartition("/")
        if suffix.lower() not in PROTOS:
            raise InputError(f"invalid protocol {suffix!r} in {shown(spec)!r}; valid ones are: tcp, udp")
        proto = suffix.lower()
    fields = split_fields(body)
    if len(fields) == 2:
        bind, lport, thost, tport = default_bind, fields[0], DEFAULT_TARGET, fields[1]
    elif len(fields) == 3:
        bind, (lport, thost, tport) = default_bind, fields
        if not is_ascii_number(lport) and _is_ip(lport.strip("[]")):  # BIND:LPORT:TPORT is not a form
            raise PortSpecError(
                f"{shown(spec)!r} reads as LPORT:THOST:TPORT, and {shown(lport)!r} is no port; to bind an address give "
                f"the target host too, e.g. {lport}:{thost}:{DEFAULT_TARGET}:{tport}"
            )
    elif len(fields) == 4:
        bind = parse_host(fields[0], "bind address", spec, literal_only=True)
        lport, thost, tport = fields[1:]
    else:
        raise InputError(f"malformed forward SPEC {shown(spec)!r}; the forms are {FORMS} (IPv6 in brackets)")
    listen_port = parse_port(lport, "listen port", spec)
    target_host = parse_host(thost, "target host", spec)
    target_port = parse_port(tport, "target port", spec)
    return ForwardSpec(
        bind=bind,
        listen_port=listen_port,
        target_host=target_host,
        target_port=target_port,
        proto=proto,
        allow=tuple(str(n) for n in parse_cidrs(allow)),
        deny=tuple(str(n) for n in parse_cidrs(deny)),
    )


def spec_has_bind(text: str) -> bool:
    """True when SPEC names its bind address (the 4-field form), so a kernel forward keeps it
    as given instead of fitting the default bind to the target's family."""
    t = text.strip(" ")
    body = t.rpartition("/")[0] if "/" in t else t
    try:
        return len(split_fields(body)) == 4
    except InputError:
        return False


def format_spec(spec: ForwardSpec) -> str:
    """The canonical long form; ``parse_spec(format_spec(s))`` gives ``s`` back (without allow/deny)."""
    return str(spec)


def parse_cidr(text: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise TargetError(
            f"invalid CIDR block {shown(text)!r}; expected e.g. 10.0.0.0/8, 192.0.2.7 or fd00::/8"
        ) from None


def parse_cidrs(items: Iterable[str]) -> tuple[Network, ...]:
    return tuple(parse_cidr(t) for t in items)


def normalize_client(addr: str) -> Address:
    """The client's address as an ip_address, with IPv4-mapped IPv6 (::ffff:a.b.c.d) unwrapped."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_allowed(addr: str, allow: Sequence[Network], deny: Sequence[Network]) -> bool:
    """Deny wins; an empty allow list admits every client that is not denied."""
    ip = normalize_client(addr)
    if any(ip.version == n.version and ip in n for n in deny):
        return False
    if not allow:
        return True
    return any(ip.version == n.version and ip in n for n in allow)


def is_loopback_bind(bind: str) -> bool:
    try:
        return ipaddress.ip_address(bind.split("%", 1)[0]).is_loopback
    except ValueError:
        return bind == "localhost"


# ---- config files ------------------------------------------------------------------------

_TOP_KEYS = {"forwards", "allow", "deny", "connect_timeout", "udp_idle_timeout", "udp_max_sessions", "drain"}
_ENTRY_KEYS = {"spec", "allow", "deny"}


def _str_list(value: Any, key: str, path: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise FileFormatError(path, f"{key!r} must be a CIDR block or a list of them")


# The same ranges as the command-line options (cli/forward.py).
_LIMITS: dict[str, tuple[float, float, bool]] = {  # key -> (low, high, low is allowed)
    "connect_timeout": (0, 3600, False),
    "udp_idle_timeout": (0, 86400, False),
    "udp_max_sessions": (1, 1_000_000, True),
    "drain": (0, 3600, True),
}


def _number(value: Any, key: str, path: str, *, integer: bool = False) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # a default
        return value
    if not isinstance(value, str):
        kind = "a whole number" if integer else "a number of seconds"
        raise FileFormatError(path, f"{key!r} must be {kind}, not {value!r}")
    low, high, closed = _LIMITS[key]
    try:
        return parse_number(value, what=key, low=low, high=high, integer=integer, low_open=not closed)
    except InputError as exc:
        raise FileFormatError(path, str(exc)) from None


def parse_config(text: str, path: str = "<config>") -> ForwardConfig:
    """Parse a YAML config file. Example::

    allow: [10.0.0.0/8]          # applies to every forward without its own list
    connect_timeout: 5
    forwards:
      - "8080:2988"
      - spec: "0.0.0.0:5353:10.0.0.2:53/udp"
        allow: [10.1.0.0/16]
    """
    import yaml  # pure parsing; imported here to keep CLI start-up fast

    from portkit.parse.yamltext import load

    data = load(text, path, yaml.BaseLoader)  # BaseLoader builds only str/list/dict; depth and alias limits
    if data is None:
        raise FileFormatError(path, "empty config; expected a mapping with a 'forwards' list")
    if isinstance(data, list):
        data = {"forwards": data}
    if not isinstance(data, dict):
        raise FileFormatError(path, "expected a mapping with a 'forwards' list")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise FileFormatError(
            path, f"unknown key {unknown[0]!r}; valid keys are: {', '.join(sorted(_TOP_KEYS))}"
        )
    entries = data.get("forwards")
    if not isinstance(entries, list) or not entries:
        raise FileFormatError(path, "'forwards' must be a non-empty list of SPECs")
    top_allow = _str_list(data.get("allow"), "allow", path)
    top_deny = _str_list(data.get("deny"), "deny", path)
    forwards: list[ForwardSpec] = []
    seen: dict[tuple[str, int, str], str] = {}
    lines = _entry_lines(text)
    for i, entry in enumerate(entries, 1):
        try:
            spec = _config_entry(entry, i, path, top_allow, top_deny, seen)
        except FileFormatError as exc:
            if exc.line is None and i <= len(lines):
                raise FileFormatError(path, exc.problem, line=lines[i - 1]) from None
            raise
        forwards.append(spec)
    defaults = ForwardOptions()
    options = ForwardOptions(
        connect_timeout=_number(
            data.get("connect_timeout", defaults.connect_timeout), "connect_timeout", path
        ),
        udp_idle_timeout=_number(
            data.get("udp_idle_timeout", defaults.udp_idle_timeout), "udp_idle_timeout", path
        ),
        udp_max_sessions=int(
            _number(
                data.get("udp_max_sessions", defaults.udp_max_sessions),
                "udp_max_sessions",
                path,
                integer=True,
            )
        ),
        drain=_number(data.get("drain", defaults.drain), "drain", path),
    )
    return ForwardConfig(forwards=tuple(forwards), options=options)


def _config_entry(
    entry: object,
    i: int,
    path: str,
    top_allow: list[str],
    top_deny: list[str],
    seen: dict[tuple[str, int, str], str],
) -> ForwardSpec:
    """One item of a config's ``forwards`` list (``i`` counts from 1, as people do)."""
    where = f"forwards[{i}]"
    if isinstance(entry, str):
        spec_text, allow, deny = entry, top_allow, top_deny
    elif isinstance(entry, dict):
        if len(entry) == 1 and "spec" not in entry and list(entry.values()) == [""]:
            key = next(iter(entry))
            raise FileFormatError(
                path, f"{where}: {key + ':'!r} is not a SPEC (missing target port; quote SPECs)"
            )
        bad = sorted(set(entry) - _ENTRY_KEYS)
        if bad:
            raise FileFormatError(
                path, f"{where}: unknown key {bad[0]!r}; valid keys are: allow, deny, spec"
            )
        raw = entry.get("spec")
        if not isinstance(raw, str):
            raise FileFormatError(path, f"{where}: missing 'spec' (a SPEC such as \"8080:127.0.0.1:80\")")
        spec_text = raw
        allow = _str_list(entry["allow"], "allow", path) if "allow" in entry else top_allow
        deny = _str_list(entry["deny"], "deny", path) if "deny" in entry else top_deny
    else:
        raise FileFormatError(path, f"{where}: expected a SPEC string or a mapping with 'spec'")
    try:
        spec = parse_spec(spec_text, allow=allow, deny=deny)
    except InputError as exc:
        raise FileFormatError(path, f"{where}: {exc}") from None
    if spec.key in seen:
        raise FileFormatError(
            path, f"{where}: {spec.listen}/{spec.proto} is already used by {seen[spec.key]}"
        )
    seen[spec.key] = where
    return spec


def _entry_lines(text: str) -> list[int]:
    """The file line of each item of the ``forwards`` list (for error messages)."""
    import yaml

    from portkit.parse.yamltext import compose

    try:
        node = compose(text, "<config>", yaml.BaseLoader)
    except FileFormatError:
        return []
    if isinstance(node, yaml.MappingNode):
        node = next((v for k, v in node.value if getattr(k, "value", None) == "forwards"), None)
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [item.start_mark.line + 1 for item in node.value]


def check_unique(specs: Sequence[ForwardSpec]) -> None:
    """Two forwards on one listen address/port/proto cannot both run."""
    seen: set[tuple[str, int, str]] = set()
    for s in specs:
        if s.key in seen:
            raise InputError(
                f"two forwards listen on {s.listen}/{s.proto}; each listen port may be used once"
            )
        seen.add(s.key)
