"""portkit.api functions for the why domain: why a port cannot be reached, and where it dies.

import portkit
d = portkit.why("db.lab:3306")            # -> Diagnosis; d.findings[0] is the main cause
d.reachable, d.findings[0].code, d.findings[0].fix
t = portkit.trace("10.0.2.2:80")           # -> TraceResult; t.last_hop

Gathering and reasoning are separate steps, and the facts in between are a snapshot that
can be written down and reasoned over elsewhere (``portkit why --facts-out/--facts-in``)::

f = portkit.why_facts("db.lab:3306")      # gathering: sockets, netlink, probes (I/O)
portkit.dump_facts(f, "db.facts.json")    # {"schema": 1, "kind": "why-facts", "facts": {...}}
d = portkit.diagnose_facts(portkit.read_facts("db.facts.json"))   # reasoning: no I/O
"""

from __future__ import annotations

import json
from typing import Any

from portkit.model.diagnosis import Diagnosis, Facts
from portkit.model.trace import TraceResult

__all__: list[str] = [
    "check_facts_out",
    "check_snapshot_target",
    "diagnose_facts",
    "dump_facts",
    "facts_document",
    "parse_facts",
    "read_facts",
    "trace",
    "why",
    "why_facts",
]

#: The ``kind`` of a facts snapshot document, beside ``"schema": 1``.
FACTS_KIND = "why-facts"
_SNAPSHOT = "facts snapshot"


def why_facts(
    target: str,
    *,
    from_addr: str | None = None,
    timeout: float = 1.0,
    retries: int = 1,
    trace: bool = True,
    family: int | None = None,
) -> Facts:
    """Gather the facts about ``TARGET:PORT[/proto]`` from this host (no reasoning)."""
    from portkit.engine.endpoint import parse_endpoint
    from portkit.ops.why_gather import GatherOptions, gather

    ep = parse_endpoint(target)
    if from_addr is not None:
        from_addr = _from_address(from_addr, ep.host, family)
    if family not in (None, 4, 6):
        from portkit.errors import InputError

        raise InputError(f"invalid family {family!r}; valid ones are: 4, 6")
    opts = GatherOptions(from_addr=from_addr, timeout=timeout, retries=retries, trace=trace, family=family)
    return gather(ep.host, ep.port, ep.proto, opts)


def why(
    target: str,
    *,
    from_addr: str | None = None,
    timeout: float = 1.0,
    retries: int = 1,
    trace: bool = True,
    family: int | None = None,
) -> Diagnosis:
    """Why ``TARGET:PORT[/proto]`` can or cannot be reached, from this host's vantage point.

    ``from_addr`` names the client: one of this host's addresses (we are the client and
    send from it), or another host's (we are the server or a router between). A name that
    does not resolve is a finding (NAME_NOT_RESOLVED), not an error.
    """
    facts = why_facts(
        target, from_addr=from_addr, timeout=timeout, retries=retries, trace=trace, family=family
    )
    return diagnose_facts(facts)


def diagnose_facts(facts: Facts) -> Diagnosis:
    """The diagnosis of a recorded snapshot: the reasoning step alone, with no I/O."""
    from portkit.engine.diagnosis import diagnose
    from portkit.i18n import Message

    return diagnose(facts, Message)


def facts_document(facts: Facts) -> dict[str, Any]:
    """The snapshot as a JSON document: ``{"schema": 1, "kind": "why-facts", "facts": {...}}``,
    with every field of the facts (internal ones too), so it reads back to an equal object."""
    from portkit import SCHEMA_VERSION
    from portkit.model.codec import to_json

    return {"schema": SCHEMA_VERSION, "kind": FACTS_KIND, "facts": to_json(facts)}


def check_facts_out(path: str) -> None:
    """Refuse an output path for a snapshot before the gathering starts (a typo must not cost
    a gathering); ``-`` is standard output."""
    if path != "-":
        from portkit.backends.files import check_user_file_writable

        check_user_file_writable(path, _SNAPSHOT)


def dump_facts(facts: Facts, path: str) -> None:
    """Write the snapshot to ``path`` whole or not at all, or to standard output for ``-``."""
    text = json.dumps(facts_document(facts), indent=2, ensure_ascii=False) + "\n"
    if path == "-":
        import sys

        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from portkit.backends.files import write_user_file

    write_user_file(path, text, _SNAPSHOT)


def parse_facts(text: str, source: str = "<snapshot>") -> Facts:
    """Read a snapshot document (the text ``dump_facts`` writes); anything else is bad input
    (:class:`~portkit.errors.FileFormatError`, naming ``source`` and what is wrong)."""
    from portkit import SCHEMA_VERSION
    from portkit.errors import FileFormatError
    from portkit.model.codec import CodecError, from_json

    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(source, f"not JSON ({exc.msg}); a {_SNAPSHOT} is JSON", line=exc.lineno) from None
    except RecursionError:
        raise FileFormatError(source, f"nested too deeply for a {_SNAPSHOT}") from None
    if not isinstance(doc, dict):
        raise FileFormatError(source, f"not a {_SNAPSHOT}: expected a JSON object")
    if doc.get("kind") != FACTS_KIND or "facts" not in doc:
        raise FileFormatError(
            source,
            f"not a {_SNAPSHOT}: expected \"kind\": \"{FACTS_KIND}\" and \"facts\" "
            "(written by 'portkit why TARGET --facts-out FILE')",
        )
    schema = doc.get("schema")
    if schema != SCHEMA_VERSION or isinstance(schema, bool):
        raise FileFormatError(
            source, f"{_SNAPSHOT} schema {json.dumps(schema)} is not supported; valid ones are: {SCHEMA_VERSION}"
        )
    extra = sorted(set(doc) - {"schema", "kind", "facts"})
    if extra:
        raise FileFormatError(source, f"unknown key {extra[0]!r}; valid ones are: facts, kind, schema")
    try:
        facts = from_json(Facts, doc["facts"])
    except CodecError as exc:
        where = "facts" + exc.path[1:]
        raise FileFormatError(source, f"{where}: {exc.problem}") from None
    except RecursionError:
        raise FileFormatError(source, f"nested too deeply for a {_SNAPSHOT}") from None
    problem = _implausible(facts)
    if problem is not None:
        raise FileFormatError(source, f"facts.{problem}")
    return facts


_ROLES = frozenset({"client", "router", "server"})


def _implausible(facts: Facts) -> str | None:
    """What no gathering writes at the top of a snapshot (the codec checked the types)."""
    import ipaddress

    if not 1 <= facts.port <= 65535:
        return f"port: {facts.port} is not a port; valid ports are 1-65535"
    if facts.proto not in ("tcp", "udp"):
        return f"proto: invalid protocol {facts.proto!r}; valid ones are: tcp, udp"
    if not facts.roles <= _ROLES:
        bad = sorted(facts.roles - _ROLES)[0]
        return f"roles: invalid role {bad!r}; valid ones are: client, router, server"
    if facts.address is not None:
        try:
            ipaddress.ip_address(facts.address)
        except ValueError:
            return f"address: {facts.address!r} is not an IPv4 or IPv6 address"
    return None


def check_snapshot_target(facts: Facts, target: str) -> None:
    """Refuse a TARGET given with a snapshot that names another one: the diagnosis is of the
    snapshot's target, and answering a question about a different one would mislead."""
    import ipaddress

    from portkit.engine.endpoint import parse_endpoint
    from portkit.errors import InputError

    ep = parse_endpoint(target)
    want, have = ep.host.strip("[]").lower(), facts.target.strip("[]").lower()
    try:
        same_host = ipaddress.ip_address(want) == ipaddress.ip_address(have)
    except ValueError:
        same_host = want == have
    if not same_host or ep.port != facts.port or ep.proto != facts.proto:
        recorded = f"{_host(facts.target)}:{facts.port}/{facts.proto}"
        raise InputError(
            f"target {target!r} is not the snapshot's {recorded}; give that target or leave TARGET out"
        )


def _host(target: str) -> str:
    bare = target.strip("[]")
    return f"[{bare}]" if ":" in bare else bare


def read_facts(path: str) -> Facts:
    """The snapshot in the file ``path``, or on standard input for ``-``."""
    from portkit.backends.files import read_stdin_text, read_user_file

    if path == "-":
        return parse_facts(read_stdin_text(_SNAPSHOT), "<stdin>")
    text = read_user_file(path, _SNAPSHOT)
    assert text is not None  # missing_ok is False: a missing file raised
    return parse_facts(text, path)


def trace(
    target: str,
    *,
    max_ttl: int = 30,
    timeout: float = 1.0,
    tries: int = 2,
    family: int | None = None,
    method: str = "auto",
) -> TraceResult:
    """Traceroute aimed at ``TARGET:PORT[/proto]``: hops up to the port's answer or the last hop.

    ``method``: "auto" (the sockets' error queue, plus a raw ICMP listener when root),
    "recverr" (error queue only, no privilege) or "raw" (raw ICMP listener only; root).
    """
    from portkit.drivers.trace import trace_port
    from portkit.engine.endpoint import parse_endpoint
    from portkit.errors import InputError, ResolveError
    from portkit.ops.why_gather import system_resolve

    ep = parse_endpoint(target)
    host = ep.host.strip("[]")
    try:
        address = _address(host, "target")
    except InputError:
        v4, v6 = system_resolve(host)
        pick = list(v4 if family == 4 else v6 if family == 6 else (*v4, *v6))
        if not pick:
            raise ResolveError(host, f"no IPv{family} address" if family else "no address") from None
        address = pick[0]
    return trace_port(
        address,
        ep.port,
        ep.proto,
        target=ep.host,
        max_ttl=max_ttl,
        timeout=timeout,
        tries=tries,
        method=method,
    )


def _from_address(text: str, target_host: str, family: int | None) -> str:
    """--from ADDR or --from NAME: a name is resolved the same way as the target (issue 13 item 17)."""
    from portkit.engine.endpoint import check_name, parse_address
    from portkit.errors import TargetError
    from portkit.ops.why_gather import system_resolve

    t = text.strip(" ")
    if ":" in t or parse_address(t.strip("[]"), what="--from address") is not None or t[:1].isdigit():
        return _address(text, "--from")
    name = check_name(t, what="--from host")
    try:
        v4, v6 = system_resolve(name)
    except OSError:
        v4, v6 = (), ()
    want6 = family == 6 or (family is None and ":" in target_host)
    picks = (v6 + v4) if want6 else (v4 + v6)
    if family is not None:
        picks = v6 if family == 6 else v4
    if not picks:
        raise TargetError(f"invalid --from host {name!r}: the name does not resolve (give an IPv4 or IPv6 address)")
    return picks[0]


def _address(text: str, what: str) -> str:
    from portkit.engine.endpoint import parse_address
    from portkit.errors import TargetError

    ip = parse_address(text.strip(" ").strip("[]"), what=f"{what} address")  # link-local needs %iface
    if ip is None:
        raise TargetError(f"invalid {what} address {text!r}: give an IPv4 or IPv6 address")
    return str(ip)
