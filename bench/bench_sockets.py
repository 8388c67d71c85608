"""Benchmark: listing 40,000 sockets (20,000 loopback connections) in a pk- namespace.

Run by hand as root::

    .venv/bin/python bench/bench_sockets.py [--connections 20000] [--runs 7]

It creates its own namespace ``pk-bench-<random>``, starts 4 holder processes inside it
(two servers that accept, two clients that connect; at most 10,000 descriptors each,
below this machine's 20,000 open-files limit), and compares in the same run, as median
wall times of whole commands run under the same ``ip netns exec``:

* ``portkit ls --all --json`` vs ``ss -tanp`` (target <= 1.25x) and vs a Python process
  calling ``psutil.net_connections("tcp")`` (target: no slower);
* ``portkit ls`` (listening, every holding process) vs ``ss -tlnp`` (target <= 1.0x), and
  for one port (``ls --port 7001`` vs ``ss -tlnp sport = :7001``);
* ``portkit who 1`` start-up (target <= 0.15 s) vs ``python -c pass``;
* in-process decoders on the same table: our netlink parser, /proc/net parsing, pyroute2.

The namespace and every process are removed at the end, even on failure.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")
PORTKIT = str(ROOT / ".venv" / "bin" / "portkit")

SERVER = r"""
import socket, sys, threading
port, count = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(4096)
held = []
while len(held) < count:
    held.append(s.accept()[0])
print("ready", flush=True)
sys.stdin.read()
"""

CLIENT = r"""
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(count):
    c = socket.socket(); c.connect(("127.0.0.1", port)); held.append(c)
print("ready", flush=True)
sys.stdin.read()
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


@contextmanager
def loaded_namespace(connections: int) -> Iterator[str]:
    ns = f"pk-bench-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", ns)
    procs: list[subprocess.Popen[str]] = []
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        per = connections // 2
        for port in (7001, 7002):
            srv = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, str(port), str(per)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            procs.append(srv)
            time.sleep(0.3)
            cli = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, str(port), str(per)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            procs.append(cli)
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError("a holder process failed to start")
        yield ns
    finally:
        for p in procs:
            if p.stdin:
                p.stdin.close()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def interleaved(commands: dict[str, Sequence[str]], runs: int, baseline_src: str | None = None) -> dict[str, float]:
    """Median wall time of each command; runs are interleaved (A B C, A B C, ...) so that
    load from other work on the machine falls on every command alike. With
    ``baseline_src``, each portkit command also runs from that source tree ("NAME [baseline]")."""
    if baseline_src is not None:
        extra = {
            f"{k} [baseline]": [
                *(a for x in argv for a in (["env", f"PYTHONPATH={baseline_src}", x] if x == PORTKIT else [x]))
            ]
            for k, argv in commands.items()
            if PORTKIT in argv
        }
        commands = {**commands, **extra}
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            t0 = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def median_call(fn: Callable[[], object], runs: int) -> float:
    times: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def in_process(ns: str, runs: int) -> dict[str, float]:
    """Decoders alone on the same table (inside the namespace, no process mapping), and the
    fd walk alone; interleaved like the commands, pyroute2 once (it takes seconds)."""
    from portkit.backends import netns as netns_mod
    from portkit.backends import procs
    from portkit.backends.sockets import make_backend

    path = netns_mod.netns_path(ns)
    masks = {"tcp": (1 << 14) - 2}
    fams = ("ipv4", "ipv6")

    def decode(name: str) -> Callable[[], object]:
        backend = make_backend(name)
        return lambda: netns_mod.run_in_netns(path, lambda: backend.dump(masks, fams))

    listening = {r[8] for r in netns_mod.run_in_netns(path, lambda: make_backend("netlink").dump({"tcp": 1 << 10}, fams))}
    n_rows = len(netns_mod.run_in_netns(path, lambda: make_backend("netlink").dump(masks, fams)))
    jobs: dict[str, Callable[[], object]] = {
        f"decode:netlink ({n_rows} rows)": decode("netlink"),
        f"decode:procfs ({n_rows} rows)": decode("procfs"),
        "walk /proc/*/fd (all sockets)": lambda: procs.socket_owners(None, parallel=False),
        "walk /proc/*/fd (all sockets, forked)": lambda: procs.socket_owners(None, parallel=True),
        f"walk /proc/*/fd ({len(listening)} listening inodes)": lambda: procs.socket_owners(listening, parallel=False),
        f"walk /proc/*/fd ({len(listening)} listening inodes, forked)": lambda: procs.socket_owners(listening, parallel=True),
    }
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(runs):
        for name, fn in jobs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    out = {k: statistics.median(v) for k, v in times.items()}
    out[f"decode:pyroute2 ({n_rows} rows, 1 run)"] = median_call(decode("pyroute2"), 1)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument(
        "--baseline",
        metavar="TREE",
        help="also run every portkit command from the source tree TREE (PYTHONPATH=TREE/src), interleaved in "
        "the same run, and print new/baseline ratios",
    )
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_sockets needs root (it creates a network namespace)", file=sys.stderr)
        return 3
    # An installed portkit has its bytecode compiled; an editable checkout may not (and
    # PYTHONDONTWRITEBYTECODE may be set), which would add compile time to every run.
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "src" / "portkit")], check=True, stdout=subprocess.DEVNULL)
    if args.baseline:
        base_src = str(Path(args.baseline).resolve() / "src")
        subprocess.run([PY, "-m", "compileall", "-q", base_src], check=True, stdout=subprocess.DEVNULL)
    with loaded_namespace(args.connections) as ns:
        nsx = ["ip", "netns", "exec", ns]
        n = subprocess.run([*nsx, "ss", "-tanH"], check=True, capture_output=True, text=True).stdout.count("\n")
        print(f"namespace {ns}: {n} TCP sockets")
        r = args.runs
        nofork = ["env", "PORTKIT_PARALLEL_WALK=0"]
        t = interleaved(
            {
                "ss -tanp": [*nsx, "ss", "-tanp"],
                "ss -tan": [*nsx, "ss", "-tan"],
                "ss -tlnp": [*nsx, "ss", "-tlnp"],
                "psutil.net_connections('tcp')": [*nsx, PY, "-c", "import psutil; psutil.net_connections('tcp')"],
                "portkit ls --all --json (ip netns exec)": [*nsx, PORTKIT, "ls", "--all", "--json"],
                "portkit ls --all --json --netns": [PORTKIT, "ls", "--all", "--json", "--netns", ns],
                "portkit ls --all --json (no forked walk)": [*nsx, *nofork, PORTKIT, "ls", "--all", "--json"],
                "portkit ls --all --json (procfs backend)": [
                    *nsx, "env", "PORTKIT_SOCKET_BACKEND=procfs", PORTKIT, "ls", "--all", "--json",
                ],
                "portkit ls (ip netns exec)": [*nsx, PORTKIT, "ls"],
                "portkit ls --netns": [PORTKIT, "ls", "--netns", ns],
                "portkit ls (no forked walk)": [*nsx, *nofork, PORTKIT, "ls"],
                "ss -tlnp sport = :7001": [*nsx, "ss", "-tlnp", "sport", "=", ":7001"],
                "portkit ls --port 7001": [*nsx, PORTKIT, "ls", "--port", "7001"],
            },
            r,
            base_src if args.baseline else None,
        )  # fmt: skip
        t.update(
            interleaved(
                {"python -c pass": [PY, "-c", "pass"], "portkit who 1": [PORTKIT, "who", "1"]},
                r * 3,
                base_src if args.baseline else None,
            )
        )
        for k, v in in_process(ns, r).items():
            t[k] = v
    width = max(len(k) for k in t)
    for k, v in t.items():
        print(f"{k:<{width}}  {v * 1000:8.1f} ms")
    print()
    print(f"ls --all --json / ss -tanp            = {t['portkit ls --all --json (ip netns exec)'] / t['ss -tanp']:.2f}x (target <= 1.25x)")
    print(f"ls --all --json --netns / ss -tanp    = {t['portkit ls --all --json --netns'] / t['ss -tanp']:.2f}x")
    ps = t["psutil.net_connections('tcp')"]
    print(f"ls --all --json / psutil              = {t['portkit ls --all --json (ip netns exec)'] / ps:.2f}x (target <= 1.0x)")
    print(f"ls / ss -tlnp                         = {t['portkit ls (ip netns exec)'] / t['ss -tlnp']:.2f}x (target <= 1.0x)")
    print(f"ls --netns / ss -tlnp                 = {t['portkit ls --netns'] / t['ss -tlnp']:.2f}x")
    print(f"ls (no forked walk) / ss -tlnp        = {t['portkit ls (no forked walk)'] / t['ss -tlnp']:.2f}x")
    print(f"ls --port 7001 / ss -tlnp sport 7001  = {t['portkit ls --port 7001'] / t['ss -tlnp sport = :7001']:.2f}x")
    print(f"ls --all --json (no fork) / ss -tanp  = {t['portkit ls --all --json (no forked walk)'] / t['ss -tanp']:.2f}x")
    print(f"who 1                                 = {t['portkit who 1'] * 1000:.0f} ms (target <= 150 ms)")
    if args.baseline:
        print()
        print(f"new / baseline ({args.baseline}), same run, interleaved:")
        for k in [k for k in t if f"{k} [baseline]" in t]:
            print(f"  {k:<{width}}  {t[k] / t[f'{k} [baseline]']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
