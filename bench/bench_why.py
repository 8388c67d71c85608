"""How long `portkit why` and `portkit trace` take, against the anchors, in the same run.

Run by hand, as root (it builds a lab of namespaces and removes it afterwards)::

    sudo .venv/bin/python bench/bench_why.py --runs 7

The lab is client -- r1 -- r2 -- server; r2's forward chain drops tcp/81. Each command is
timed as a whole process run inside the client's namespace (start-up included):

* fine target (server:80 open): ``portkit why`` vs a direct connection (``socat``) and
  ``nmap -sT`` on the same port; goal: ``why`` under 2 s;
* dropped target (server:81): ``portkit why`` (probe, then the port-aimed trace) vs
  ``nmap -sT`` (which only says "filtered") and ``socat`` with a 1 s connect timeout;
* ``portkit trace`` to the dropped port.

Medians of ``--runs`` runs; max in brackets.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

SCENARIO: dict[str, Any] = {
    "name": "bench-why",
    "hosts": {
        "client": {"routes": [{"to": "default", "via": "10.73.1.1"}]},
        "r1": {"forward": True, "routes": [{"to": "default", "via": "10.73.2.2"}]},
        "r2": {
            "forward": True,
            "routes": [{"to": "10.73.1.0/24", "via": "10.73.2.1"}],
            "firewall": (
                "table inet filt {\n  chain fw {\n    type filter hook forward priority 0; policy accept;\n"
                "    tcp dport 81 drop\n  }\n}\n"
            ),
        },
        "server": {
            "routes": [{"to": "default", "via": "10.73.3.1"}],
            "services": [
                {"proto": "tcp", "listen": "0.0.0.0:80", "kind": "http"},
                {"proto": "tcp", "listen": "0.0.0.0:81", "kind": "http"},
            ],
        },
    },
    "links": [
        {"name": "lan", "ends": {"client": ["10.73.1.2/24"], "r1": ["10.73.1.1/24"]}},
        {"name": "mid", "ends": {"r1": ["10.73.2.1/24"], "r2": ["10.73.2.2/24"]}},
        {"name": "wan", "ends": {"r2": ["10.73.3.1/24"], "server": ["10.73.3.2/24"]}},
    ],
}
SERVER = "10.73.3.2"


def timed(argv: Sequence[str], runs: int) -> tuple[float, float, int]:
    """(median s, max s, last exit status) of running argv ``runs`` times."""
    times: list[float] = []
    rc = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        rc = subprocess.run(argv, capture_output=True, check=False).returncode
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times), rc


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_why needs root (it builds a namespace lab)", file=sys.stderr)
        return 3
    from portkit.ops.lab import lab_down, lab_up

    name = f"bench-why-{os.getpid()}"
    lab_up(SCENARIO, name=name)
    try:
        ns = f"pk-{name}-client"
        inside = ["ip", "netns", "exec", ns]
        pk = [*inside, sys.executable, "-m", "portkit"]
        rows: list[tuple[str, str, float, float, int]] = []

        def run(group: str, label: str, cmd: Sequence[str]) -> float:
            med, mx, rc = timed(cmd, args.runs)
            rows.append((group, label, med, mx, rc))
            return med

        fine = run("fine (server:80 open)", "portkit why", [*pk, "why", f"{SERVER}:80"])
        direct = run(
            "fine (server:80 open)", "anchor: direct connection (socat)",
            [*inside, "socat", "-u", "OPEN:/dev/null", f"TCP:{SERVER}:80,connect-timeout=1"],
        )  # fmt: skip
        nmap_fine = run(
            "fine (server:80 open)",
            "anchor: nmap -sT -Pn -n --reason",
            [*inside, "nmap", "-sT", "-Pn", "-n", "--reason", "-p", "80", SERVER],
        )
        dropped = run("dropped (server:81)", "portkit why (probe + trace)", [*pk, "why", f"{SERVER}:81"])
        no_trace = run(
            "dropped (server:81)", "portkit why --no-trace", [*pk, "why", f"{SERVER}:81", "--no-trace"]
        )
        nmap_drop = run(
            "dropped (server:81)",
            "anchor: nmap -sT -Pn -n --reason",
            [*inside, "nmap", "-sT", "-Pn", "-n", "--reason", "-p", "81", SERVER],
        )
        socat_drop = run(
            "dropped (server:81)", "anchor: socat connect-timeout=1",
            [*inside, "socat", "-u", "OPEN:/dev/null", f"TCP:{SERVER}:81,connect-timeout=1"],
        )  # fmt: skip
        trace = run("dropped (server:81)", "portkit trace", [*pk, "trace", f"{SERVER}:81"])
        startup = run("start-up", "portkit --version", [*pk, "--version"])

        print(f"command: sudo .venv/bin/python bench/bench_why.py --runs {args.runs}\n")
        print("| target | command | median | max | exit |")
        print("|---|---|---|---|---|")
        for group, label, med, mx, rc in rows:
            print(f"| {group} | {label} | {med * 1000:.0f} ms | {mx * 1000:.0f} ms | {rc} |")
        print()
        print(
            f"why on a fine target: {fine:.2f} s (goal < 2 s); / socat {fine / direct:.1f}x, / nmap {fine / nmap_fine:.2f}x"
        )
        print(
            f"why on a dropped target: {dropped:.2f} s; / nmap {dropped / nmap_drop:.2f}x, / socat {dropped / socat_drop:.2f}x"
        )
        print(
            f"  without the trace: {no_trace:.2f} s; trace alone: {trace:.2f} s; interpreter + portkit start-up: {startup:.2f} s"
        )
    finally:
        lab_down(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
