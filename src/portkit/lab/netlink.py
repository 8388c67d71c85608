"""The same lab network built with pyroute2 (netlink from Python) instead of iproute2.

This executes a :class:`~portkit.lab.plan.Plan`'s network part exactly as
:mod:`portkit.lab.build` does with ``ip -batch``: namespaces, sysctls, bridges and veth
pairs created inside their namespaces, then addresses (IPv6 with IFA_F_NODAD), links
and routes from a thread inside each namespace. It exists so the two ways can be measured
against each other (bench/bench_lab.py, docs/lab.md): importing pyroute2 alone costs
about 0.2 s, more than iproute2 needs for the whole of nat-pat.yaml, so ``lab up`` uses
iproute2 by default and this backend on request (``backend="pyroute2"``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from portkit.errors import SystemRefused, map_os_error
from portkit.lab import system
from portkit.lab.plan import NsConfig, Plan

IFA_F_NODAD = 0x02


def _mapped(what: str, fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except OSError as exc:  # NetlinkError is an OSError subclass
        raise map_os_error(exc, what) from exc


def create_namespaces(p: Plan) -> None:
    from pyroute2 import netns

    for ns in p.namespaces:
        _mapped(f"creating namespace {ns}", netns.create, ns)


def create_links(p: Plan) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for cfg in p.configs:
            for br in cfg.bridges:
                _mapped(f"creating bridge {br} in {cfg.ns}", ipr.link, "add", ifname=br, kind="bridge", net_ns_fd=cfg.ns)
        for v in p.veths:
            _mapped(
                f"creating veth {v.name_a}@{v.ns_a} - {v.name_b}@{v.ns_b}",
                ipr.link,
                "add",
                ifname=v.name_a,
                kind="veth",
                net_ns_fd=v.ns_a,
                peer={"ifname": v.name_b, "net_ns_fd": v.ns_b},
            )


def configure(cfg: NsConfig) -> None:
    """Addresses, ports, links up and routes inside one namespace (in a thread there)."""

    def work() -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:

            def index(name: str) -> int:
                found = ipr.link_lookup(ifname=name)
                if not found:
                    raise SystemRefused(f"no interface {name} in {cfg.ns}")
                return int(found[0])

            _mapped("lo up", ipr.link, "set", index=index("lo"), state="up")
            for port, br in cfg.ports:
                _mapped(f"{port} into {br}", ipr.link, "set", index=index(port), master=index(br))
            for dev, cidr in cfg.addresses:
                iface = ipaddress.ip_interface(cidr)
                extra: dict[str, Any] = {"flags": IFA_F_NODAD} if iface.version == 6 else {}
                _mapped(
                    f"address {cidr} on {dev}",
                    ipr.addr,
                    "add",
                    index=index(dev),
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                    **extra,
                )
            for dev in (*cfg.up, *(p for p, _ in cfg.ports)):
                _mapped(f"{dev} up", ipr.link, "set", index=index(dev), state="up")
            for to, via, fam in cfg.routes:
                _mapped(
                    f"route {to} via {via}",
                    ipr.route,
                    "add",
                    dst=to,
                    gateway=via,
                    family=10 if fam == 6 else 2,
                )

    system.in_ns(cfg.ns, work)
