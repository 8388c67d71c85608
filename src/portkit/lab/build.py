"""Bring a lab up and down with iproute2, record it, report on it.

Theory of operation. ``up``: validate (done by the caller), plan, write the state file
listing every namespace *before* creating any, then: one ``ip -batch`` creates the
namespaces; sysctls are written from threads inside each namespace; a second ``ip -batch``
creates bridges and veth pairs directly inside their namespaces; one ``ip -n NS -batch``
per namespace (run in parallel) sets addresses, links and routes; nft text is loaded per
host; one service runner per host starts (in parallel) and reports readiness on a pipe.
Any failure tears down what was made and re-raises: nothing is half-applied.

``down`` works only from the state file: it kills the recorded runner pids (after
checking each still runs this lab's runner), deletes the namespaces (their veths and
bridges die with them) and the /etc/netns files, then the state file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from portkit.backends.files import read_user_file
from portkit.errors import FileFormatError, InputError, PortkitError, PrivilegeError, SystemRefused
from portkit.lab import plan as lab_plan
from portkit.lab import state, system
from portkit.lab.scenario import load_yaml
from portkit.model.lab import (
    Host,
    HostAddress,
    HostStatus,
    LabResult,
    LabStatus,
    LabSummary,
    Scenario,
    ServiceStatus,
)


def require_root(action: str) -> None:
    if os.geteuid() != 0:
        why = {
            "up": "it creates network namespaces and veth links",
            "down": "it kills the lab's services and deletes its network namespaces",
            "exec": "it enters the host's network namespace",
        }.get(action, "labs are network namespaces, which only root may change")
        raise PrivilegeError(
            f"'portkit lab {action}' needs root: {why}",
            hint="run it with sudo",
        )


def digest(scenario: Scenario) -> str:
    data = json.dumps(asdict(scenario) | {"source": ""}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="portkit-lab")


def _each(fn: Any, items: list[Any]) -> None:
    """Run fn over items in parallel; re-raise the first error after all finished."""
    if len(items) <= 1:
        for it in items:
            fn(it)
        return
    with _pool() as pool:
        futures = [pool.submit(fn, it) for it in items]
    for f in futures:
        f.result()


BACKENDS = ("iproute2", "pyroute2")


def up(scenario: Scenario, *, name: str | None = None, backend: str = "iproute2") -> LabResult:
    """Bring ``scenario`` up as lab ``name`` (default: its own name). Idempotent.

    ``backend`` builds the network with ``ip -batch`` (iproute2, the default: measured
    faster, see docs/lab.md) or with pyroute2's netlink calls.
    """
    if backend not in BACKENDS:
        raise InputError(f"invalid lab backend {backend!r}; valid ones are: {', '.join(BACKENDS)}")
    require_root("up")
    lab = state.check_name(name or scenario.name)
    t0 = time.monotonic()
    with state.locked(lab):
        old = state.read(lab)
        if old is not None:
            same = old.get("digest") == digest(scenario)
            if same and old.get("status") == "up" and _healthy(old):
                services = sum(len(h.services) for h in scenario.hosts)
                return LabResult(lab, "already-up", tuple(old["namespaces"]), services, time.monotonic() - t0)
            if not same and old.get("source") != scenario.source:
                raise InputError(
                    f"lab {lab!r} is already up from {old.get('source')}",
                    hint=f"'portkit lab down {lab}' first, or choose another name with --name",
                )
            # The same scenario half-dead, or its file edited since: rebuild it.
            _down_locked(lab, old)
        p = lab_plan.make_plan(scenario, lab)
        taken = [ns for ns in p.namespaces if system.ns_exists(ns)]
        if taken:
            raise InputError(
                f"network namespace {taken[0]} already exists but lab {lab!r} has no record of it",
                hint=f"if it is a leftover, remove it with 'ip netns del {taken[0]}'",
            )
        record: dict[str, Any] = {
            "schema": 1,
            "name": lab,
            "status": "creating",
            "source": scenario.source,
            "digest": digest(scenario),
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "namespaces": list(p.namespaces),
            "hosts": {h: ns for h, ns in p.host_ns.items()},
            "scenario": asdict(scenario),
            "runners": {},
        }
        state.write(lab, record)
        try:
            _create(scenario, p, record, backend)
        except BaseException:
            try:
                _down_locked(lab, record)
            except PortkitError:
                pass
            raise
        record["status"] = "up"
        state.write(lab, record)
    services = sum(len(h.services) for h in scenario.hosts)
    return LabResult(lab, "up", p.namespaces, services, time.monotonic() - t0)


def _create(scenario: Scenario, p: lab_plan.Plan, record: dict[str, Any], backend: str) -> None:
    if backend == "pyroute2":
        from portkit.lab import netlink

        netlink.create_namespaces(p)
        _each(lambda c: system.write_sysctls(c.ns, c.sysctls), list(p.configs))
        netlink.create_links(p)
        _each(netlink.configure, list(p.configs))
    else:
        system.ip_batch("".join(f"netns add {ns}\n" for ns in p.namespaces))
        _each(lambda c: system.write_sysctls(c.ns, c.sysctls), list(p.configs))
        system.ip_batch(lab_plan.ip_batch_links(p))
        _each(lambda c: system.ip_batch(lab_plan.ip_batch_inside(c), netns=c.ns), list(p.configs))
    _each(lambda c: system.wait_links_up(c.ns, (*c.up, *(port for port, _ in c.ports))), list(p.configs))
    for ns in p.host_ns.values():
        system.write_etc(ns, {"hosts": p.hosts_file, "resolv.conf": p.resolv[ns]})
    hosts = {h.name: h for h in scenario.hosts}
    ns_host = {ns: hosts[h] for h, ns in p.host_ns.items()}
    _each(lambda c: _load_firewall(scenario, ns_host[c.ns], c.ns, c.nft), [c for c in p.configs if c.nft])
    procs = {}
    for h in scenario.hosts:
        if h.services:
            svcs = [
                {"proto": s.proto, "address": s.address, "port": s.port, "kind": s.kind, "banner": s.banner, "v6only": s.v6only}
                for s in h.services
            ]
            proc = system.spawn_runner(p.host_ns[h.name], p.lab, h.name, svcs)
            procs[h.name] = proc
            record["runners"][h.name] = {"pid": proc.pid, "starttime": system.proc_starttime(proc.pid)}
    if procs:
        state.write(p.lab, record)
        system.wait_ready(procs)


_NFT_ERROR = re.compile(r"/dev/stdin:(\d+):[\d-]+: Error: ([^|]*)")


def _load_firewall(scenario: Scenario, host: Host, ns: str, script: str) -> None:
    """Load a host's nft text; nft's refusal of the scenario's own ``firewall:`` text is a
    bad scenario (exit 2, naming the file and line), not a refusal of the system."""
    try:
        system.nft_load(ns, script)
    except SystemRefused as exc:
        m = _NFT_ERROR.search(str(exc))
        own = host.firewall.strip().count("\n") + 1 if host.firewall.strip() else 0
        if m is None or int(m.group(1)) > own:
            raise
        nft_line, problem = int(m.group(1)), m.group(2).strip()
        raise FileFormatError(
            scenario.source,
            f"hosts.{host.name}.firewall: nft rejects line {nft_line} of it: {problem}",
            line=_firewall_line(scenario.source, host.name, nft_line),
        ) from exc


def _firewall_line(source: str, host: str, nft_line: int) -> int | None:
    """The file line of line ``nft_line`` of host's ``firewall:`` block (None for dicts)."""
    try:
        text = read_user_file(source, "scenario file") or ""
        _, lines = load_yaml(text, source)
    except PortkitError:
        return None
    key = lines.get(("hosts", host, "firewall"))
    if key is None:
        return None
    row = text.splitlines()[key - 1].split("firewall:", 1)[-1].strip()
    if not row.startswith(("|", ">")):
        return key  # an inline string: its key line is as close as it gets
    skipped = 0  # plan strips leading blank lines of the block
    for ln in text.splitlines()[key:]:
        if ln.strip():
            break
        skipped += 1
    return key + skipped + nft_line


def _healthy(record: dict[str, Any]) -> bool:
    if not all(system.ns_exists(ns) for ns in record.get("namespaces", [])):
        return False
    return all(
        system.is_runner(r["pid"], record["name"], host, r.get("starttime"))
        for host, r in record.get("runners", {}).items()
    )


def down(name: str) -> LabResult:
    """Remove everything lab ``name`` made; InputError when no such lab is recorded."""
    require_root("down")
    t0 = time.monotonic()
    # refused before the lock, which creates the labs directory: a refusal writes nothing
    state.require(name)
    with state.locked(name):
        record = state.require(name)
        lingering = _down_locked(name, record)
    services = sum(len(h.get("services", [])) for h in record.get("scenario", {}).get("hosts", []))
    return LabResult(name, "down", tuple(record.get("namespaces", [])), services, time.monotonic() - t0, lingering)


def _down_locked(name: str, record: dict[str, Any]) -> tuple[int, ...]:
    """Remove what ``record`` lists; the pids of other processes still inside its namespaces."""
    pids = [
        r["pid"]
        for host, r in record.get("runners", {}).items()
        if system.is_runner(r["pid"], name, host, r.get("starttime"))
    ]
    # A runner spawned by an `up` that died before recording it still carries the lab's name.
    pids += [p for p in system.runners_of(name) if p not in pids]
    system.kill_pids(pids)
    namespaces = [ns for ns in record.get("namespaces", []) if system.ns_exists(ns)]
    lingering = tuple(system.pids_in(namespaces))
    if namespaces:
        # -force: keep going past one that vanished meanwhile.
        try:
            system.ip_batch("".join(f"netns del {ns}\n" for ns in namespaces), force=True)
        except SystemRefused:
            still = [ns for ns in namespaces if system.ns_exists(ns)]
            if still:
                raise
    from portkit.backends.kernel_forward import forget_netns

    for ns in record.get("namespaces", []):
        system.remove_etc(ns)
        forget_netns(ns)  # `portkit forward --kernel --netns` state of a host
    state.remove(name)
    return lingering


def status(name: str) -> LabStatus:
    record = state.require(name)
    sc = record.get("scenario", {})
    hosts = []
    for hd in sc.get("hosts", []):
        host = hd["name"]
        ns = record["hosts"].get(host, lab_plan.netns_name(name, host))
        runner = record.get("runners", {}).get(host)
        alive = bool(runner) and system.is_runner(runner["pid"], name, host, runner.get("starttime"))
        # With root, each listener is checked among the runner's own sockets; else the runner's life.
        bound = system.bound_ports(runner["pid"]) if runner and alive else None
        addrs = tuple(
            HostAddress(link=ln["name"], address=a)
            for ln in sc.get("links", [])
            for e in ln["ends"]
            if e["host"] == host
            for a in e["addresses"]
        )
        services = tuple(
            ServiceStatus(
                host=host,
                proto=s["proto"],
                listen=f"[{s['address']}]:{s['port']}" if ":" in s["address"] else f"{s['address']}:{s['port']}",
                kind=s["kind"],
                alive=alive and (bound is None or (s["proto"], s["port"]) in bound),
            )
            for s in hd.get("services", [])
        )
        hosts.append(
            HostStatus(
                name=host,
                netns=ns,
                present=system.ns_exists(ns),
                addresses=addrs,
                services=services,
                runner_pid=runner["pid"] if runner else None,
            )
        )
    healthy = record.get("status") == "up" and all(h.present for h in hosts) and all(
        s.alive for h in hosts for s in h.services
    )
    st = "up" if healthy else ("creating" if record.get("status") == "creating" else "degraded")
    return LabStatus(
        name=name,
        state=st,
        source=record.get("source", ""),
        created=record.get("created", ""),
        hosts=tuple(hosts),
        links=tuple(ln["name"] for ln in sc.get("links", [])),
    )


def summaries() -> tuple[LabSummary, ...]:
    out = []
    for name in state.names():
        try:
            st = status(name)
        except PortkitError:
            # A state file that cannot be read is still listed: hiding it would hide the lab
            # (a lab that went down meanwhile, its file gone, is simply not listed).
            try:
                state.read(name)
            except SystemRefused:
                out.append(LabSummary(name=name, state="unreadable", hosts=0, services=0, source="", created=""))
            except PortkitError:
                pass
            continue
        out.append(
            LabSummary(
                name=name,
                state=st.state,
                hosts=len(st.hosts),
                services=sum(len(h.services) for h in st.hosts),
                source=st.source,
                created=st.created,
            )
        )
    return tuple(out)
