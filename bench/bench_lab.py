"""Benchmark: bringing labs up and down; iproute2 (``ip -batch``) vs pyroute2 vs one ``ip`` per command.

Run by hand as root::

    .venv/bin/python bench/bench_lab.py [--runs 7]

Three measurements, each a median (and max) over ``--runs`` runs, all in the same run:

1. ``portkit lab up examples/labs/nat-pat.yaml`` and ``portkit lab down`` as whole commands
   (fresh process: interpreter start-up, imports, validation, namespaces, links, nft,
   services ready). Targets: up < 2 s, down < 1 s. The anchor is the same network built by
   a shell script that runs one ``ip`` per command (what a hand-written netns lab does),
   without services or firewall.
2. ``portkit lab up`` of every shipped scenario, fresh process, ``--backend iproute2``
   (default) vs ``--backend pyroute2``.
3. In-process, network only (namespaces, sysctls, bridges, veths, addresses, routes) for
   every scenario: ``ip -batch`` (one ``ip`` per namespace) vs one ``ip`` process per
   command vs pyroute2 (already imported; its import is timed separately).

Every lab is named ``pk-benchlab...``-style with a random suffix and removed at the end,
even on failure.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from portkit.lab import build, netlink, plan, scenario, state, system

ROOT = Path(__file__).resolve().parents[1]
LABS = ROOT / "examples" / "labs"
SCENARIOS = ("inbound-rules", "loopback-only", "port-forward", "nat-pat", "dual-stack")
PY = sys.executable


def portkit(*args: str) -> float:
    t = time.perf_counter()
    r = subprocess.run([PY, "-m", "portkit", *args], capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"portkit {' '.join(args)} failed: {r.stderr.strip()}")
    return dt


def stats(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:7.1f} ms (max {max(xs) * 1000:.1f})"


def name() -> str:
    return f"benchlab-{secrets.token_hex(3)}"


def cleanup(lab: str, namespaces: tuple[str, ...] = ()) -> None:
    if state.read(lab) is not None:
        build.down(lab)
    left = [ns for ns in namespaces if system.ns_exists(ns)]
    if left:
        system.ip_batch("".join(f"netns del {ns}\n" for ns in left), force=True)


def shell_script(p: plan.Plan) -> str:
    """The network of a plan as a shell script running one ``ip`` per command."""
    lines = [f"ip netns add {ns}" for ns in p.namespaces]
    for cfg in p.configs:
        keys = " ".join(f"{k.replace('/', '.')}={v}" for k, v in cfg.sysctls)
        lines.append(f"ip netns exec {cfg.ns} sysctl -q -w {keys}")
    lines += [f"ip {ln}" for ln in plan.ip_batch_links(p).splitlines()]
    for cfg in p.configs:
        lines += [f"ip -n {cfg.ns} {ln}" for ln in plan.ip_batch_inside(cfg).splitlines()]
    return "set -e\n" + "\n".join(lines) + "\n"


def net_batch(p: plan.Plan) -> None:
    system.ip_batch("".join(f"netns add {ns}\n" for ns in p.namespaces))
    build._each(lambda c: system.write_sysctls(c.ns, c.sysctls), list(p.configs))
    system.ip_batch(plan.ip_batch_links(p))
    build._each(lambda c: system.ip_batch(plan.ip_batch_inside(c), netns=c.ns), list(p.configs))


def net_per_command(p: plan.Plan) -> None:
    def ip(*argv: str) -> None:
        subprocess.run([system.ip_binary(), *argv], check=True, capture_output=True)

    for ns in p.namespaces:
        ip("netns", "add", ns)
    build._each(lambda c: system.write_sysctls(c.ns, c.sysctls), list(p.configs))
    for ln in plan.ip_batch_links(p).splitlines():
        ip(*shlex.split(ln))
    for cfg in p.configs:
        for ln in plan.ip_batch_inside(cfg).splitlines():
            ip("-n", cfg.ns, *shlex.split(ln))


def net_pyroute2(p: plan.Plan) -> None:
    netlink.create_namespaces(p)
    build._each(lambda c: system.write_sysctls(c.ns, c.sysctls), list(p.configs))
    netlink.create_links(p)
    build._each(netlink.configure, list(p.configs))


def timed_network(sc_name: str, fn: Callable[[plan.Plan], None], runs: int) -> list[float]:
    sc = scenario.load(LABS / f"{sc_name}.yaml")
    out = []
    for _ in range(runs):
        p = plan.make_plan(sc, name())
        try:
            t = time.perf_counter()
            fn(p)
            out.append(time.perf_counter() - t)
        finally:
            cleanup(p.lab, p.namespaces)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_lab needs root (it creates namespaces)")
    runs = args.runs
    nat_pat = str(LABS / "nat-pat.yaml")

    print(f"== 1. portkit lab up/down of nat-pat.yaml, whole commands, {runs} runs")
    ups, downs, anchors, anchor_downs = [], [], [], []
    for _ in range(runs):
        lab = name()
        try:
            ups.append(portkit("lab", "up", nat_pat, "--name", lab))
            downs.append(portkit("lab", "down", lab))
        finally:
            cleanup(lab)
        p = plan.make_plan(scenario.load(nat_pat), name())
        try:
            t = time.perf_counter()
            subprocess.run(["sh", "-c", shell_script(p)], check=True, capture_output=True)
            anchors.append(time.perf_counter() - t)
            t = time.perf_counter()
            script = "".join(f"ip netns del {ns}\n" for ns in p.namespaces)
            subprocess.run(["sh", "-c", script], check=True, capture_output=True)
            anchor_downs.append(time.perf_counter() - t)
        finally:
            cleanup(p.lab, p.namespaces)
    print(f"lab up   {stats(ups)}   target < 2000 ms")
    print(f"lab down {stats(downs)}   target < 1000 ms")
    print(f"anchor up: shell script, one ip per command (network only) {stats(anchors)}")
    print(f"anchor down: shell script, ip netns del per namespace      {stats(anchor_downs)}")
    print(f"ratio lab up / anchor: {statistics.median(ups) / statistics.median(anchors):.2f}x")
    print(f"ratio lab down / anchor: {statistics.median(downs) / statistics.median(anchor_downs):.2f}x")

    print(f"\n== 2. portkit lab up, whole command, --backend iproute2 vs pyroute2, {runs} runs")
    for sc_name in SCENARIOS:
        res: dict[str, list[float]] = {"iproute2": [], "pyroute2": []}
        for _ in range(runs):
            for backend in res:
                lab = name()
                try:
                    res[backend].append(portkit("lab", "up", str(LABS / f"{sc_name}.yaml"), "--name", lab, "--backend", backend))
                finally:
                    cleanup(lab)
        ratio = statistics.median(res["pyroute2"]) / statistics.median(res["iproute2"])
        print(f"{sc_name:14} iproute2 {stats(res['iproute2'])}  pyroute2 {stats(res['pyroute2'])}  pyroute2/iproute2 {ratio:.2f}x")

    t = time.perf_counter()
    subprocess.run([PY, "-c", "import pyroute2"], check=True)
    imp = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([PY, "-c", "pass"], check=True)
    bare = time.perf_counter() - t
    print(f"\n'import pyroute2' in a fresh interpreter: {(imp - bare) * 1000:.0f} ms over a bare start-up")

    print(f"\n== 3. network only, in-process, {runs} runs (pyroute2 already imported)")
    import pyroute2  # noqa: F401  (import cost reported above, not here)

    for sc_name in SCENARIOS:
        b = timed_network(sc_name, net_batch, runs)
        c = timed_network(sc_name, net_per_command, runs)
        r = timed_network(sc_name, net_pyroute2, runs)
        mb = statistics.median(b)
        print(
            f"{sc_name:14} ip -batch {stats(b)}  ip per command {stats(c)} ({statistics.median(c) / mb:.2f}x)"
            f"  pyroute2 {stats(r)} ({statistics.median(r) / mb:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
