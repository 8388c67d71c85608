"""Benchmark: ``portkit fw check`` against a live ruleset of 5,000 rules, vs ``nft -j list ruleset``.

Run by hand as root:  .venv/bin/python bench/bench_fw.py [--rules 5000] [--runs 15]

Builds a throwaway namespace (pk-fw-bench-<hex>) with one veth link, loads a ruleset of
N rules (addresses, ports, sets, jumps, across two tables), then times, in the same run:
  anchor:  ip netns exec NS nft -j list ruleset          (reading the ruleset alone)
  portkit: python -m portkit fw check --netns NS ...     (start-up + read + parse + walk)
The checked packet matches no rule until the very end, so every rule is walked. Two
rulesets: plain rules, and rules that each hold an anonymous port set (nft's own listing
is much slower on those). portkit is timed cold (PORTKIT_FW_CACHE=0: reads the ruleset from
the kernel's netlink dumps), warm (the read ruleset cached under the namespace's nftables
generation id, which every commit changes, so it is the live ruleset; only the id is read),
and cold through libnftables' JSON (PORTKIT_NFT_READER=json, the reader `fw show` uses).
portkit's modules are byte-compiled first, as an installed package's are.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time


def ruleset(n: int, anon_sets: bool = True) -> str:
    lines = ["flush ruleset", "table inet bench {", "  set blocked { type ipv4_addr; flags interval; elements = { 198.51.100.0/24, 203.0.113.0/24 } }"]
    lines.append("  chain extra {")
    for i in range(n // 10):
        lines.append(f"    ip saddr 10.{(i >> 8) & 255}.{i & 255}.7 udp dport {1000 + i % 60000} drop")
    lines.append("  }")
    lines.append("  chain input {\n    type filter hook input priority 0; policy drop;")
    lines.append("    ct state established,related accept\n    iifname \"lo\" accept\n    ip saddr @blocked drop\n    jump extra")
    for i in range(n - n // 10 - 10):
        a, b = (i >> 8) & 255, i & 255
        ports = f"{{ {2000 + i % 50000}, {3000 + i % 50000} }}" if anon_sets else str(2000 + i % 50000)
        lines.append(f"    ip saddr 10.{a}.{b}.0/24 tcp dport {ports} accept")
    lines.append("    tcp dport 22 accept\n  }\n}")
    lines.append("table ip extra {\n  chain pre {\n    type filter hook prerouting priority -150; policy accept;")
    lines.extend(f"    ip daddr 172.16.{i}.1 tcp dport 80 drop" for i in range(5))
    lines.append("  }\n}")
    return "\n".join(lines) + "\n"


def timed(argv: list[str], runs: int, env: dict[str, str] | None = None) -> tuple[float, str]:
    samples = []
    out = ""
    full_env = {**os.environ, **(env or {})}
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=full_env)
        samples.append(time.perf_counter() - t)
        out = proc.stdout if proc.returncode in (0, 1) else f"exit {proc.returncode}: {proc.stderr}"
    return statistics.median(samples) * 1000, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument(
        "--baseline",
        metavar="TREE",
        help="also time portkit from the source tree TREE (PYTHONPATH=TREE/src) in the same run; prints new/baseline",
    )
    args = ap.parse_args()
    import compileall

    import portkit

    compileall.compile_dir(os.path.dirname(portkit.__file__), quiet=1)
    base: dict[str, str] = {}
    if args.baseline:
        base = {"PYTHONPATH": os.path.join(os.path.abspath(args.baseline), "src")}
        compileall.compile_dir(os.path.join(base["PYTHONPATH"], "portkit"), quiet=1)
    ns = f"pk-fw-bench-{secrets.token_hex(3)}"
    peer = f"pkfb{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", ns], check=True)
        for cmd in (["addr", "add", "10.200.0.1/24", "dev", "eth0"], ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        check = [sys.executable, "-m", "portkit", "fw", "check", "--netns", ns, "--src", "10.200.0.9",
                 "--dst", "10.200.0.1", "--dport", "22", "--json"]  # fmt: skip
        for anon in (False, True):
            script = ruleset(args.rules, anon_sets=anon)
            subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True, check=True)
            count = sum(1 for ln in script.splitlines() if ln.startswith("    ") and not ln.strip().startswith("type "))
            anchor, _ = timed(["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"], args.runs)
            cold, _ = timed(check, args.runs, env={"PORTKIT_FW_CACHE": "0"})
            warm, out = timed(check, args.runs)
            cold_json, _ = timed(check, args.runs, env={"PORTKIT_FW_CACHE": "0", "PORTKIT_NFT_READER": "json"})
            kind = "each with an anonymous port set" if anon else "plain (one port each)"
            print(f"{count} rules, {kind}:")
            print(f"  nft -j list ruleset (anchor):               {anchor:7.1f} ms")
            print(f"  portkit fw check, cold (netlink reader):    {cold:7.1f} ms  ratio {cold / anchor:.2f}")
            print(f"  portkit fw check, warm (generation cache):  {warm:7.1f} ms  ratio {warm / anchor:.2f}")
            print(f"  portkit fw check, cold, libnftables JSON:   {cold_json:7.1f} ms  ratio {cold_json / anchor:.2f}")
            print(f"  answer: {out.strip()[:120]}")
            if base:
                b_cold, _ = timed(check, args.runs, env={"PORTKIT_FW_CACHE": "0", **base})
                b_warm, b_out = timed(check, args.runs, env=base)
                n_cold, _ = timed(check, args.runs, env={"PORTKIT_FW_CACHE": "0"})
                n_warm, _ = timed(check, args.runs)
                print(f"  baseline {args.baseline}: cold {b_cold:7.1f} ms (ratio {b_cold / anchor:.2f}), warm {b_warm:7.1f} ms")
                print(f"  new / baseline (second pair, same run): cold {n_cold / b_cold:.3f}, warm {n_warm / b_warm:.3f}")
                if b_out.strip() != out.strip():
                    print(f"  NOTE: baseline answer differs: {b_out.strip()[:120]}")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
