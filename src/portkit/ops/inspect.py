"""The inspect domain's library functions: socket table, host report, who, free, info.

Theory of operation: a socket backend (:mod:`portkit.backends.sockets`, chosen once)
dumps the kernel's TCP/UDP tables of one network namespace as row tuples; one walk of
``/proc/*/fd`` maps socket inodes to pids; each row then becomes the values of a
:class:`~portkit.model.sockets.SocketEntry` in field order (names, exposure, service and
class looked up once per distinct value). :func:`collect_sockets` returns those value
tuples — what the CLI serialises directly, because building 40,000 frozen objects and
converting them back costs more than the kernel dump itself — and :func:`list_sockets`
wraps the same tuples in ``SocketEntry`` objects for library users.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any

from portkit.backends import procs, services
from portkit.backends.sockets import get_backend
from portkit.errors import InputError, PortSpecError, SystemRefused
from portkit.model.sockets import (
    ALL_STATES_MASK,
    STATE_CLOSE,
    STATE_ESTABLISHED,
    STATE_LISTEN,
    STATE_NEW_SYN_RECV,
    STATE_TIME_WAIT,
    TCP_STATES,
    UDP_STATES,
    Holder,
    Note,
    ProcessRef,
    SocketEntry,
    SocketRows,
    SocketTable,
    WhoReport,
)

# free, info and who --kill live in modules of their own (each module stays under ~500 lines).
from portkit.ops.free_ports import free_ports
from portkit.ops.kill import kill_holders
from portkit.ops.port_info import port_info
from portkit.parse.sockdiag import Row
from portkit.registry.exposure import exposure as _exposure
from portkit.registry.ports import port_class as _port_class
from portkit.registry.ports import sensitive_category

__all__ = [
    "VALID_STATES",
    "SocketRows",
    "collect_sockets",
    "ephemeral_range",
    "free_ports",
    "kill_holders",
    "list_sockets",
    "port_info",
    "report",
    "service_name",
    "who",
]

VALID_STATES: tuple[str, ...] = (*(TCP_STATES[i] for i in sorted(TCP_STATES)), "UNCONN")
_STATE_BITS = {name: 1 << num for num, name in TCP_STATES.items()}
FAMILY_NAMES = {"ipv4": "ipv4", "4": "ipv4", "inet": "ipv4", "ipv6": "ipv6", "6": "ipv6", "inet6": "ipv6"}

_ENTRY_FIELDS = tuple(f.name for f in fields(SocketEntry))
# Holder(*entry_values, cmdline, started): positional, which mypy cannot count through a tuple.
_make_holder: Any = Holder
# Indexes into a value tuple (SocketEntry field order).
I_PROTO, I_FAMILY, I_LADDR, I_LPORT, I_RADDR, I_RPORT, I_STATE = range(7)
I_PID, I_PROCESS, I_USER, I_PROCESSES, I_SERVICE, I_CLASS, I_EXPOSURE, I_INBOUND, I_INBOUND_RULE, I_CONTAINER = range(7, 17)


def _parse_states(states: Iterable[str]) -> tuple[int, int]:
    tcp_mask = udp_mask = 0
    for raw in states:
        name = raw.strip().upper().replace("-", "_")
        if name.startswith("TCP_"):
            name = name[4:]
        if name == "UNCONN":
            udp_mask |= 1 << STATE_CLOSE
        elif name in _STATE_BITS:
            tcp_mask |= _STATE_BITS[name]
            if name == "SYN_RECV":
                # Half-open connections live as request sockets, which the kernel selects
                # by NEW_SYN_RECV but reports (like /proc and ss) as SYN_RECV.
                tcp_mask |= _STATE_BITS["NEW_SYN_RECV"]
            if name == "ESTABLISHED":
                udp_mask |= 1 << STATE_ESTABLISHED
        else:
            raise InputError(f"invalid state {raw!r}; valid states are: {', '.join(VALID_STATES)}")
    return tcp_mask, udp_mask


def _families(family: str | int | None) -> tuple[str, ...]:
    if family is None:
        return ("ipv4", "ipv6")
    fam = FAMILY_NAMES.get(str(family).lower())
    if fam is None:
        raise InputError(f"invalid family {family!r}; valid families are: ipv4, ipv6")
    return (fam,)


def _check_port(port: int, what: str = "port") -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise PortSpecError(f"invalid {what} {port!r}; valid ports are 1-65535")
    return port


def _masks(tcp: bool, udp: bool, listening: bool, all_states: bool, states: Iterable[str] | None) -> dict[str, int]:
    if states is not None:
        tcp_mask, udp_mask = _parse_states(states)
    elif all_states:
        tcp_mask, udp_mask = ALL_STATES_MASK, (1 << STATE_CLOSE) | (1 << STATE_ESTABLISHED)
    elif listening:
        tcp_mask, udp_mask = 1 << STATE_LISTEN, 1 << STATE_CLOSE
    else:  # everything but listening / bound-unconnected
        tcp_mask, udp_mask = ALL_STATES_MASK & ~(1 << STATE_LISTEN), 1 << STATE_ESTABLISHED
    masks: dict[str, int] = {}
    if tcp and tcp_mask:
        masks["tcp"] = tcp_mask
    if udp and udp_mask:
        masks["udp"] = udp_mask
    return masks


def _process_matches(comm: str, wanted: str) -> bool:
    # comm is cut to 15 characters by the kernel, so a longer name matches its prefix.
    return comm.startswith(wanted) or (len(comm) == 15 and wanted.startswith(comm))


class _RowLookups:
    """Per-call caches turning raw row fields into entry values."""

    def __init__(self) -> None:
        self.db = services.service_db()
        self.users: dict[int, str | None] = {}
        self.exposure: dict[str, str] = {}
        self.service: dict[tuple[int, str], str | None] = {}
        self.klass: dict[int, str] = {}
        self.procs: dict[int, ProcessRef | None] = {}
        self.holders: dict[tuple[int, ...], tuple[ProcessRef, ...]] = {}

    def user(self, uid: int) -> str | None:
        if uid < 0:
            return None
        name = self.users.get(uid)
        if name is None:
            name = self.users[uid] = procs.user_name(uid)
        return name

    def process(self, pid: int) -> ProcessRef | None:
        if pid in self.procs:
            return self.procs[pid]
        name = procs.process_name(pid)
        uid = procs.process_uid(pid)
        ref = None if name is None else ProcessRef(pid, name, procs.user_name(uid) if uid is not None else "?")
        self.procs[pid] = ref
        return ref

    def holder_refs(self, pids: Sequence[int]) -> tuple[ProcessRef, ...]:
        key = tuple(pids)
        refs = self.holders.get(key)
        if refs is None:
            refs = self.holders[key] = tuple(r for r in (self.process(p) for p in pids) if r is not None)
        return refs

    def values(self, rows: Sequence[Row], owners: dict[int, list[int]]) -> list[tuple[Any, ...]]:
        """Entry values (SocketEntry field order) of ``rows``; the hot loop of ``ls --all``."""
        out: list[tuple[Any, ...]] = []
        append = out.append
        exposure = self.exposure
        users = self.users
        holders = self.holders
        owners_get = owners.get
        # (proto, port) -> (service, class) and (proto, state) -> name, filled on first use.
        port_facts: dict[str, dict[int, tuple[str | None, str]]] = {"tcp": {}, "udp": {}}
        state_names: dict[str, dict[int, str]] = {"tcp": {}, "udp": {}}
        db_name = self.db.name
        for proto, fam, state, laddr, lport, raddr, rport, uid, inode in rows:
            exp = exposure.get(laddr)
            if exp is None:
                exp = exposure[laddr] = _exposure(laddr)
            facts_p = port_facts[proto]
            facts = facts_p.get(lport)
            if facts is None:
                facts = facts_p[lport] = (db_name(lport, proto), _port_class(lport))
            names_p = state_names[proto]
            state_name = names_p.get(state)
            if state_name is None:
                table = UDP_STATES if proto == "udp" else TCP_STATES
                state_name = names_p[state] = table.get(state, str(state))
            pids = owners_get(inode)
            if pids:
                key = tuple(pids)
                refs = holders.get(key)
                if refs is None:
                    refs = self.holder_refs(pids)
                first: ProcessRef | None = refs[0] if refs else None
            else:
                refs, first = (), None
            if not inode:
                user = None
            elif uid in users:
                user = users[uid]
            else:
                user = self.user(uid)
            if first is None:
                append((proto, fam, laddr, lport, raddr, rport, state_name, None, None, user, refs,
                        facts[0], facts[1], exp, None, None, None))  # fmt: skip
            else:
                if user is None and uid < 0:  # psutil rows carry no uid: show the holder's user
                    user = first.user
                append((proto, fam, laddr, lport, raddr, rport, state_name, first.pid, first.name, user, refs,
                        facts[0], facts[1], exp, None, None, None))  # fmt: skip
        return out


def _dump(masks: dict[str, int], families: tuple[str, ...], netns: str | None, netns_pid: int | None,
          backend_name: str | None, want_range: bool) -> tuple[list[Row], str, Any, tuple[int, int] | None]:  # fmt: skip
    backend = get_backend(backend_name)
    path = _netns_path(netns, netns_pid)
    if path is not None and not backend.per_thread_netns:
        raise SystemRefused(f"the {backend.name} socket backend cannot look into another network namespace")

    def work() -> tuple[list[Row], tuple[int, int] | None]:
        rows = backend.dump(masks, families) if masks else []
        return rows, (services.ephemeral_range() if want_range else None)

    if path is None:
        rows, eph = work()
    else:
        from portkit.backends.netns import run_in_netns

        rows, eph = run_in_netns(path, work)
    return rows, backend.name, backend, eph


def _netns_path(netns: str | None, netns_pid: int | None) -> str | None:
    if netns is None and netns_pid is None:
        return None
    from portkit.backends.netns import resolve  # ctypes: only when a namespace is asked for

    return resolve(netns, netns_pid)


def collect_sockets(
    *,
    tcp: bool = True,
    udp: bool = True,
    listening: bool = True,
    all_states: bool = False,
    states: Iterable[str] | None = None,
    port: int | None = None,
    local_port: int | None = None,
    pid: int | None = None,
    process: str | None = None,
    family: str | int | None = None,
    netns: str | None = None,
    netns_pid: int | None = None,
    backend: str | None = None,
    notes: bool = True,
) -> SocketRows:
    """The socket table as value tuples (see :func:`list_sockets` for the arguments).

    ``local_port`` matches the local port only; ``port`` matches local or remote.
    """
    masks = _masks(tcp, udp, listening, all_states, states)
    fams = _families(family)
    if port is not None:
        _check_port(port)
    if local_port is not None:
        _check_port(local_port)
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0):
        raise InputError(f"invalid pid {pid!r}; a pid is a positive integer")
    rows, bname, be, eph = _dump(masks, fams, netns, netns_pid, backend, notes)
    if port is not None:
        rows = [r for r in rows if r[4] == port or r[6] == port]
    if local_port is not None:
        rows = [r for r in rows if r[4] == local_port]
    inodes = None if len(rows) > 5000 else {r[8] for r in rows}
    owners, incomplete = be.owners(rows, inodes)
    lookups = _RowLookups()
    if pid is not None:
        rows = [r for r in rows if pid in owners.get(r[8], ())]
    if process is not None:
        keep: list[Row] = []
        for r in rows:
            for p in owners.get(r[8], ()):
                ref = lookups.process(p)
                if ref is not None and _process_matches(ref.name, process):
                    keep.append(r)
                    break
        rows = keep
    values = lookups.values(rows, owners)
    if netns is None and netns_pid is None:
        from portkit.ops.containers import annotate

        values = annotate(values)
    found_notes = _notes(values, eph) if notes and eph is not None else ()
    return SocketRows(values, found_notes, incomplete, bname)


def list_sockets(
    *,
    tcp: bool = True,
    udp: bool = True,
    listening: bool = True,
    all_states: bool = False,
    states: Iterable[str] | None = None,
    port: int | None = None,
    pid: int | None = None,
    process: str | None = None,
    family: str | int | None = None,
    netns: str | None = None,
    netns_pid: int | None = None,
    backend: str | None = None,
) -> SocketTable:
    """The TCP/UDP sockets of this host (or of a network namespace), with their holders.

    Default: listening TCP and bound, unconnected UDP sockets. ``all_states`` lists every
    state; ``states`` picks kernel state names (``ESTABLISHED``, ``TIME_WAIT``, ``UNCONN``
    ...). ``port`` matches the local or remote port, ``pid``/``process`` a holder,
    ``family`` is ``"ipv4"`` or ``"ipv6"``. ``netns`` is an ``ip netns`` name,
    ``netns_pid`` a process whose namespace to look into (e.g. a container).
    """
    got = collect_sockets(
        tcp=tcp, udp=udp, listening=listening, all_states=all_states, states=states, port=port,
        pid=pid, process=process, family=family, netns=netns, netns_pid=netns_pid, backend=backend,
    )  # fmt: skip
    return SocketTable(got.entries(), got.notes, got.owners_incomplete, got.backend)


def _sort_key(v: tuple[Any, ...]) -> tuple[Any, ...]:
    return (v[I_LPORT], v[I_PROTO], v[I_FAMILY], v[I_LADDR], v[I_STATE], v[I_PID] or 0)


def _notes(values: Sequence[tuple[Any, ...]], eph: tuple[int, int]) -> tuple[Note, ...]:
    from portkit.i18n import Message  # gettext: only when there is something to note
    from portkit.model.text import N_

    out: dict[tuple[str, int, str], Note] = {}
    low, high = eph
    for v in values:
        state = v[I_STATE]
        if state not in ("LISTEN", "UNCONN"):
            continue
        proto, port = v[I_PROTO], v[I_LPORT]
        cat = sensitive_category(port, proto)
        if cat and v[I_EXPOSURE] == "all" and ("exposed", port, proto) not in out:
            who = v[I_SERVICE] or str(port)
            msg = Message(
                N_("{service} ({category}) on {port}/{proto} listens on all interfaces; "
                   "bind it to 127.0.0.1 or allow it only from trusted hosts"),
                {"service": who, "category": cat, "port": port, "proto": proto},
            )  # fmt: skip
            out[("exposed", port, proto)] = Note("exposed-sensitive", port, proto, msg.english(), msg)
        if state == "LISTEN" and low <= port <= high and ("ephemeral", port, proto) not in out:
            msg = Message(
                N_("{port}/{proto} listens inside the ephemeral port range {low}-{high}: while it is "
                   "down, an outgoing connection may take the port and its restart fail with "
                   "'address already in use'"),
                {"port": port, "proto": proto, "low": low, "high": high},
            )  # fmt: skip
            out[("ephemeral", port, proto)] = Note("ephemeral-listener", port, proto, msg.english(), msg)
    return tuple(sorted(out.values(), key=lambda n: (n.port, n.proto, n.code)))


def report(
    *, netns: str | None = None, netns_pid: int | None = None, family: str | int | None = None,
    tcp: bool = True, udp: bool = True, backend: str | None = None, inbound_from: str | None = None,
    containers: bool = False,
) -> SocketTable:  # fmt: skip
    """The host port report: every listening TCP and bound UDP socket, sorted, with notes.

    With a container API socket present, ports published by DNAT alone appear with state
    ``PUBLISHED``; ``containers`` adds the sockets inside every running container."""
    got = collect_sockets(
        tcp=tcp, udp=udp, family=family, netns=netns, netns_pid=netns_pid, backend=backend
    )
    rows = got.rows
    if netns is None and netns_pid is None:
        rows = _container_rows(rows, tcp=tcp, udp=udp, family=family, backend=backend, inside=containers)
    entries = tuple(SocketEntry(*v) for v in sorted(rows, key=_sort_key))
    # Integration point of the firewall domain: it fills each entry's inbound/inbound_rule
    # here (dataclasses.replace); the renderers show an INBOUND column once any is set.
    table = SocketTable(entries, got.notes, got.owners_incomplete, got.backend)
    if netns_pid is None:  # the live ruleset is read with `ip netns exec NAME`
        from portkit.ops.firewall import annotate_inbound

        table = annotate_inbound(table, netns=netns, source=inbound_from)
    return table


def _container_rows(rows: list[tuple[Any, ...]], *, tcp: bool, udp: bool, family: str | int | None,
                    backend: str | None, inside: bool) -> list[tuple[Any, ...]]:  # fmt: skip
    from portkit.backends import containers as ctr_backend
    from portkit.ops import containers as ctr

    if not inside and not ctr_backend.api_sockets():
        return rows
    cs, _source = ctr_backend.list_containers()
    if not cs:
        return rows
    rows = ctr.annotate(rows, cs)

    def make(proto: str, fam: str, addr: str, port: int, ref: Any) -> tuple[Any, ...]:
        svc, klass = service_name(port, proto), _port_class(port)
        return (proto, fam, addr, port, None, None, "PUBLISHED", None, None, None, (), svc, klass,
                _exposure(addr), None, None, ref)  # fmt: skip

    fams = _families(family)
    extra = [r for r in ctr.published_rows(rows, cs, tcp, udp, make) if r[I_FAMILY] in fams]
    if inside:

        def collect(pid: int) -> list[tuple[Any, ...]]:
            return collect_sockets(tcp=tcp, udp=udp, family=family, netns_pid=pid, backend=backend, notes=False).rows

        extra += ctr.inside_rows(cs, collect)
    return rows + extra


def parse_port_proto(text: str) -> tuple[int, str | None]:
    """``"80"`` -> ``(80, None)``, ``"53/udp"`` -> ``(53, "udp")``; InputError otherwise."""
    port_s, slash, proto = text.strip(" ").partition("/")  # spaces only: "80\n" is no port
    proto = proto.lower()
    if proto not in ("tcp", "udp") and (proto or slash):  # "80/" names no protocol
        raise PortSpecError(f"invalid protocol {proto!r} in {text!r}; valid protocols are: tcp, udp")
    from portkit.parse.scalars import parse_port

    try:
        port = parse_port(port_s)
    except PortSpecError:
        shown = port_s if len(port_s) <= 40 else port_s[:20] + f"... ({len(port_s)} characters)"
        raise PortSpecError(
            f"invalid port {shown!r}; a port is a number 1-65535 (ASCII digits), optionally /tcp or /udp"
        ) from None
    return port, (proto or None)


def who(
    port: int, proto: str | None = None, *, netns: str | None = None, netns_pid: int | None = None,
    backend: str | None = None,
) -> WhoReport:  # fmt: skip
    """Every socket whose local port is ``port`` (any state a process can hold), listeners
    first, each with its first holder's command line and start time."""
    _check_port(port)
    if proto not in (None, "tcp", "udp"):
        raise InputError(f"invalid protocol {proto!r}; valid protocols are: tcp, udp")
    # TIME_WAIT sockets belong to no process, yet they make a plain bind() fail with
    # "address already in use": they are counted for the text. NEW_SYN_RECV ones belong to
    # the listener, which is listed anyway.
    mask = ALL_STATES_MASK & ~(1 << STATE_NEW_SYN_RECV)
    got, time_wait = _who_rows(port, proto, mask, netns, netns_pid, backend)
    holders: list[Holder] = []
    facts: dict[int, tuple[str, str | None]] = {}  # a server holds thousands of connections
    for v in sorted(got.rows, key=lambda v: (v[I_STATE] not in ("LISTEN", "UNCONN"), v[I_PID] or 1 << 30, v[I_PROTO])):
        pid = v[I_PID]
        if pid and pid not in facts:
            facts[pid] = (procs.process_cmdline(pid), procs.process_started(pid))
        cmd, started = facts[pid] if pid else ("", None)
        holders.append(_make_holder(*v, cmd, started))
    return WhoReport(port, tuple(holders), proto, got.owners_incomplete, time_wait)


def _who_rows(port: int, proto: str | None, mask: int, netns: str | None, netns_pid: int | None,
              backend: str | None) -> tuple[SocketRows, int]:  # fmt: skip
    masks: dict[str, int] = {}
    if proto in (None, "tcp"):
        masks["tcp"] = mask
    if proto in (None, "udp"):
        masks["udp"] = (1 << STATE_CLOSE) | (1 << STATE_ESTABLISHED)
    rows, bname, be, _ = _dump(masks, ("ipv4", "ipv6"), netns, netns_pid, backend, False)
    rows = [r for r in rows if r[4] == port]
    time_wait = sum(1 for r in rows if r[0] == "tcp" and r[2] == STATE_TIME_WAIT)
    rows = [r for r in rows if not (r[0] == "tcp" and r[2] == STATE_TIME_WAIT)]
    owners, incomplete = be.owners(rows, {r[8] for r in rows})
    lookups = _RowLookups()
    values = lookups.values(rows, owners)
    if netns is None and netns_pid is None:
        from portkit.ops.containers import annotate

        values = annotate(values)
    return SocketRows(values, (), incomplete, bname), time_wait


def service_name(port: int, proto: str = "tcp") -> str | None:
    """The service name of ``port``/``proto``: /etc/services, else portkit's own table."""
    return services.service_db().name(port, proto)


def ephemeral_range(*, netns: str | None = None, netns_pid: int | None = None) -> tuple[int, int]:
    """The OS ephemeral port range (``net.ipv4.ip_local_port_range``) of a namespace."""
    path = _netns_path(netns, netns_pid)
    if path is None:
        return services.ephemeral_range()
    from portkit.backends.netns import run_in_netns

    return run_in_netns(path, services.ephemeral_range)

