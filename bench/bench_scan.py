"""Benchmark: portkit scan (connect and --syn) against nmap, all 65,535 TCP ports of a lab host.

Run by hand as root::

    .venv/bin/python bench/bench_scan.py [--runs 5] [--src DIR]

Two labs, same run, same machine: in each, ``scanner`` scans ``target`` over a veth.

1. **dropped**: the target silently drops 2,100 ports (nft ``drop``), 20 are open, the rest
   closed. Targets: ``portkit scan -p-`` and ``portkit scan --syn -p-`` each in at most 0.5x
   the wall time of ``nmap -sT -p- -T4 -n -Pn``.
2. **clean**: the same host with nothing dropped. Targets: connect <= 1.5x nmap -sT,
   --syn <= 1.0x nmap -sT (nmap -sS is timed too, for reference).

Every command is a whole process (interpreter start-up and imports included) run with
``ip netns exec`` and writing ``-oX`` (so both sides do the same output work); the figure is
the median over ``--runs`` runs. Both labs are up at once and every run times every tool on
both, so machine noise (other engineers' suites share these 2 cores) hits all figures
alike. Peak memory is the process's ru_maxrss and CPU time its user + system time (both
from wait4, so they include portkit's forked worker). After the timed runs, portkit's and
nmap's XML are compared port by port: the states must be the same.

``--src DIR`` also times portkit run from another source tree (``PYTHONPATH=DIR/src``, the
same interpreter), e.g. a ``git worktree`` of the previous commit: in every run its scans
sit next to this tree's (the order swapped every run), so one run measures old and new
code under the same noise; the medians' new/old ratios (wall and CPU) are printed.

``--cpu ROUNDS`` (with ``--src``) measures the scanners' own cost instead, without nmap,
interpreter start-up or the forked worker: in each round, for each lab, scan kind and tree
(the trees' order swapped every round), one process scans ``--reps`` times in-process
(``processes=1``, after one warm-up scan) and reports each scan's CPU time (user + system:
on a veth the target's kernel work runs in the sender's context too) and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

from portkit.engine.endpoint import parse_ports
from portkit.ops.lab import lab_down, lab_up

OPEN = (
    22,
    80,
    443,
    3306,
    5432,
    6379,
    8080,
    8443,
    9000,
    9200,
    10000,
    20000,
    27017,
    30000,
    40000,
    45000,
    50000,
    55000,
    60000,
    65535,
)
DROPPED = (
    "30000-32099"  # 2,100 ports, silently dropped (30000 itself is open: dropped wins, so it is filtered)
)
PORTKIT = [sys.executable, "-m", "portkit"]


def scenario(dropped: bool) -> dict[str, object]:
    firewall = ""
    if dropped:
        firewall = (
            "table inet pkbench {\n  chain input {\n    type filter hook input priority 0; policy accept;\n"
            f"    tcp dport {DROPPED} drop\n  }}\n}}\n"
        )
    target: dict[str, object] = {
        "services": [{"proto": "tcp", "listen": f"[::]:{p}", "kind": "silent"} for p in OPEN],
    }
    if firewall:
        target["firewall"] = firewall
    return {
        "hosts": {"scanner": {}, "target": target},
        "links": [{"name": "lan", "ends": {"scanner": ["10.88.0.1/24"], "target": ["10.88.0.2/24"]}}],
    }


def timed(ns: str, argv: list[str]) -> tuple[float, int, float]:
    """(wall seconds, peak RSS in KiB, CPU seconds) of one command inside namespace ``ns``."""
    t0 = time.perf_counter()
    p = subprocess.Popen(
        ["ip", "netns", "exec", ns, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _pid, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        err = p.stderr.read().decode() if p.stderr else ""
        raise SystemExit(f"{argv[0]} failed ({p.returncode}): {err.strip()}")
    if p.stderr:
        p.stderr.close()
    return wall, ru.ru_maxrss, ru.ru_utime + ru.ru_stime


def xml_states(path: str) -> dict[int, str]:
    """Port -> state from an nmap-style XML file (listed ports and extrareasons' ports)."""
    out: dict[int, str] = {}
    root = ET.parse(path).getroot()
    for ep in root.iter("extraports"):
        for er in ep.iter("extrareasons"):
            for port in parse_ports(er.get("ports", "")) if er.get("ports") else ():
                out[port] = ep.get("state", "")
    for p in root.iter("port"):
        st = p.find("state")
        if st is not None:
            out[int(p.get("portid", "0"))] = st.get("state", "")
    return out


BASE = " @base"  # label suffix of the scans run from --src DIR


def source_tree(arg: str) -> str:
    """The directory to put on PYTHONPATH for ``--src DIR``: DIR/src or DIR holding portkit/."""
    root = pathlib.Path(arg).resolve()
    for cand in (root / "src", root):
        if (cand / "portkit" / "__init__.py").is_file():
            return str(cand)
    raise argparse.ArgumentTypeError(f"{arg!r} holds no portkit source tree (DIR/src/portkit or DIR/portkit)")


def tools_for(
    addr: str, tmp: str, tag: str, src: str | None = None, swap: bool = False
) -> dict[str, list[str]]:
    tools = {
        "nmap -sT -T4": ["nmap", "-sT", "-p-", "-T4", "-n", "-Pn", addr, "-oX", f"{tmp}/{tag}-nmap-sT.xml"],
        "nmap -sS -T4": ["nmap", "-sS", "-p-", "-T4", "-n", "-Pn", addr, "-oX", f"{tmp}/{tag}-nmap-sS.xml"],
    }
    here = ["env", f"PYTHONPATH={pathlib.Path(__file__).resolve().parent.parent / 'src'}", *PORTKIT]
    trees = [("", here)] if src is None else [("", here), (BASE, ["env", f"PYTHONPATH={src}", *PORTKIT])]
    if swap:
        trees.reverse()
    for mode, flags in (("connect", []), ("syn", ["--syn"])):
        for suffix, cmd in trees:
            label = f"portkit {'connect' if mode == 'connect' else '--syn'}{suffix}"
            out = f"{tmp}/{tag}-pk-{mode}{'-base' if suffix else ''}.xml"
            tools[label] = [*cmd, "scan", addr, "-p-", *flags, "-oX", out]
    return tools


Figures = dict[bool, dict[str, tuple[float, float, int, float]]]  # (wall, x nmap, RSS, CPU)


def bench(runs: int, tmp: str, src: str | None = None) -> Figures:
    """Both labs up at once; every run times every tool on both, so noise hits all alike."""
    names = {dropped: f"pkbs{secrets.token_hex(3)}" for dropped in (True, False)}
    addr = "10.88.0.2"
    walls: dict[bool, dict[str, list[float]]] = {}
    cpus: dict[bool, dict[str, list[float]]] = {}
    rss: dict[bool, dict[str, int]] = {}
    try:
        for dropped, name in names.items():
            lab_up(scenario(dropped), name=name)
        for name in names.values():
            timed(f"pk-{name}-scanner", tools_for(addr, tmp, "warm")["nmap -sT -T4"])  # neighbour caches
        for run in range(runs):
            for dropped, name in names.items():
                tools = tools_for(addr, tmp, "drop" if dropped else "clean", src, swap=run % 2 == 1)
                for label, argv in tools.items():
                    w, r, c = timed(f"pk-{name}-scanner", argv)
                    walls.setdefault(dropped, {}).setdefault(label, []).append(w)
                    cpus.setdefault(dropped, {}).setdefault(label, []).append(c)
                    rss.setdefault(dropped, {})[label] = max(rss.get(dropped, {}).get(label, 0), r)
        for dropped in names:
            tag = "drop" if dropped else "clean"
            ref = xml_states(f"{tmp}/{tag}-nmap-sT.xml")
            compared = [
                ("portkit connect", "pk-connect"),
                ("portkit --syn", "pk-syn"),
                ("nmap -sS -T4", "nmap-sS"),
            ]
            if src is not None:
                compared += [
                    (f"portkit connect{BASE}", "pk-connect-base"),
                    (f"portkit --syn{BASE}", "pk-syn-base"),
                ]
            for label, f in compared:
                got = xml_states(f"{tmp}/{tag}-{f}.xml")
                diff = [p for p in range(1, 65536) if got.get(p) != ref.get(p)]
                opened = sorted(p for p, st in got.items() if st == "open")
                print(
                    f"  [{tag}] {label}: {len(diff)} ports differ from nmap -sT; open = {len(opened)} ports"
                    + (
                        f"; first differences {[(p, got.get(p), ref.get(p)) for p in diff[:5]]}"
                        if diff
                        else ""
                    )
                )
    finally:
        for name in names.values():
            lab_down(name)
    out: Figures = {}
    for dropped, per_tool in walls.items():
        base = statistics.median(per_tool["nmap -sT -T4"])
        out[dropped] = {
            k: (
                statistics.median(v),
                statistics.median(v) / base,
                rss[dropped][k],
                statistics.median(cpus[dropped][k]),
            )
            for k, v in per_tool.items()
        }
    return out


# Run inside the scanner namespace by ``--cpu``, with PYTHONPATH selecting the tree. Fixed text:
# argv carries only the scan kind and the repetition count.
CPU_WORKER = r"""
import json, sys, time
from portkit.drivers.scanner import connect_scan
from portkit.drivers.synscan import syn_scan
from portkit.engine.timing import TimingProfile

scan = connect_scan if sys.argv[1] == "connect" else syn_scan
ports = range(1, 65536)
scan(["10.88.0.2"], ports, TimingProfile(), processes=1)  # warm-up
out = []
for _ in range(int(sys.argv[2])):
    c0, w0 = time.process_time(), time.perf_counter()
    res = scan(["10.88.0.2"], ports, TimingProfile(), processes=1)
    out.append((time.process_time() - c0, time.perf_counter() - w0, len(res.results)))
print(json.dumps(out))
"""

CpuSamples = dict[tuple[bool, str, str], list[tuple[float, float]]]  # (dropped, kind, tree) -> (cpu, wall)


def bench_cpu(rounds: int, reps: int, src: str) -> CpuSamples:
    names = {dropped: f"pkbs{secrets.token_hex(3)}" for dropped in (True, False)}
    here = str(pathlib.Path(__file__).resolve().parent.parent / "src")
    trees = [("new", here), ("old", src)]
    samples: CpuSamples = {}
    try:
        for dropped, name in names.items():
            lab_up(scenario(dropped), name=name)
        for rnd in range(rounds):
            order = trees if rnd % 2 == 0 else trees[::-1]
            for dropped, name in names.items():
                for kind in ("connect", "syn"):
                    for tag, path in order:
                        argv = [
                            *("ip", "netns", "exec", f"pk-{name}-scanner", "env", f"PYTHONPATH={path}"),
                            *(sys.executable, "-c", CPU_WORKER, kind, str(reps)),
                        ]
                        p = subprocess.run(argv, capture_output=True, text=True, check=False)
                        if p.returncode != 0:
                            raise SystemExit(f"cpu worker ({tag}, {kind}) failed: {p.stderr.strip()}")
                        for cpu, wall, judged in json.loads(p.stdout):
                            if judged != 65535:
                                raise SystemExit(f"cpu worker ({tag}, {kind}) judged {judged} ports")
                            samples.setdefault((dropped, kind, tag), []).append((cpu, wall))
    finally:
        for name in names.values():
            lab_down(name)
    return samples


def print_cpu(samples: CpuSamples, rounds: int, reps: int, src: str) -> None:
    print(f"\n## in-process scans, this tree (new) / {src} (old): {rounds} rounds x {reps} scans, medians")
    print("| lab | scan | CPU s new | CPU s old | CPU new/old | wall s new | wall s old | wall new/old |")
    print("|---|---|---|---|---|---|---|---|")
    for dropped in (True, False):
        for kind in ("connect", "syn"):
            new, old = samples[(dropped, kind, "new")], samples[(dropped, kind, "old")]
            cn, co = statistics.median(c for c, _w in new), statistics.median(c for c, _w in old)
            wn, wo = statistics.median(w for _c, w in new), statistics.median(w for _c, w in old)
            print(
                f"| {'dropped' if dropped else 'clean'} | {kind} | {cn:.3f} | {co:.3f} | {cn / co:.3f} "
                f"| {wn:.3f} | {wo:.3f} | {wn / wo:.3f} |"
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--src",
        type=source_tree,
        metavar="DIR",
        help="also time portkit from this source tree (e.g. a worktree of the previous commit), interleaved",
    )
    ap.add_argument(
        "--cpu",
        type=int,
        metavar="ROUNDS",
        help="with --src: in-process CPU time of the scanners, new vs old",
    )
    ap.add_argument("--reps", type=int, default=3, help="scans per process and round for --cpu (default 3)")
    args = ap.parse_args()
    if args.cpu is not None and args.src is None:
        print("--cpu compares two trees: give --src DIR too", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("bench_scan needs root (lab namespaces, raw sockets)", file=sys.stderr)
        return 3
    if args.cpu is not None:
        print_cpu(bench_cpu(args.cpu, args.reps, args.src), args.cpu, args.reps, args.src)
        return 0
    targets = {
        True: {"portkit connect": 0.5, "portkit --syn": 0.5},
        False: {"portkit connect": 1.5, "portkit --syn": 1.0},
    }
    with tempfile.TemporaryDirectory(prefix="pk-bench-scan-") as tmp:
        results = bench(args.runs, tmp, args.src)
    for dropped in (True, False):
        title = (
            "2,100 ports dropped, 20 open, rest closed"
            if dropped
            else "nothing dropped, 20 open, rest closed"
        )
        print(f"\n## 65,535 TCP ports, {title} (median of {args.runs})")
        print("| tool | wall s | x nmap -sT | ports/s | CPU s | peak RSS MiB | target |")
        print("|---|---|---|---|---|---|---|")
        for label, (wall, ratio, peak, cpu) in results[dropped].items():
            tgt = targets[dropped].get(label.removesuffix(BASE))
            verdict = "" if tgt is None else f"<= {tgt}x: {'met' if ratio <= tgt else 'MISSED'}"
            print(
                f"| {label} | {wall:.2f} | {ratio:.2f} | {65535 / wall:,.0f} | {cpu:.2f} | {peak / 1024:.1f} "
                f"| {verdict} |"
            )
    if args.src is not None:
        print(f"\n## this tree / {args.src} (medians of {args.runs}; > 1 is slower)")
        print("| lab | scan | wall new/old | CPU new/old |")
        print("|---|---|---|---|")
        for dropped in (True, False):
            for label in ("portkit connect", "portkit --syn"):
                new, old = results[dropped][label], results[dropped][label + BASE]
                print(
                    f"| {'dropped' if dropped else 'clean'} | {label} | {new[0] / old[0]:.3f} | {new[3] / old[3]:.3f} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
