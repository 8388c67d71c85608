"""Benchmark: portkit's userspace forwarder against socat and a direct connection.

Run by hand (root not needed; 127.0.0.1 only):

    .venv/bin/python bench/bench_forward.py                 # everything, ~3 minutes
    .venv/bin/python bench/bench_forward.py --only tput --rounds 5 --seconds 5

Measured, in one run, each figure as a ratio against the anchors:
  * throughput: iperf3 -c through each path, 1 stream and 8 parallel streams; rounds are
    interleaved (direct, socat, portkit, direct, ...) and the median is reported, because
    other work on a 2-core machine moves single figures by +-30 %;
  * connection rate: 2,000 short connections one after another, one byte echoed each;
  * CPU per GB (--cpu): each path's user+system seconds per GB moved by ``iperf3 -n`` (from
    /proc/PID/stat), for the forwarder and for the iperf3 client and server, plus how busy the
    whole machine was; far less noisy than Gbit/s on a shared 2-core machine;
  * added latency: p50/p99 of a 1-byte request/response on one connection, minus direct;
  * 5,000 concurrent idle connections through the forwarder: its resident memory;
  * nat: reading a 5,000-flow conntrack table (in a throwaway pk- namespace, root only)
    through /proc, the conntrack tool and pyroute2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PY = sys.executable
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def proc(argv: list[str], port: int | None = None) -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if port is not None:
            wait_port(port)
        yield p
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# Alternatives measured with --alternatives (the default configuration is "portkit").
ALTERNATIVES: dict[str, list[str]] = {
    "pk 1 worker": ["--workers", "1"],
    "pk copy loop": ["--no-splice"],
    "pk pipe 256K": ["--pipe-size", str(256 << 10)],
    "pk pipe 4M": ["--pipe-size", str(4 << 20)],
    "pk no bulk threads": ["--bulk-threads", "0"],  # every flow stays in the epoll loops
}


HAPROXY_CFG = """global
    nbthread 1
    tune.pipesize 1048576
    tune.bufsize 262144
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option splice-auto
listen fw
    bind {host}:{port}
    server t {host}:{target}
"""


@contextmanager
def paths(
    target: int, alternatives: bool = False, haproxy: bool = False
) -> Iterator[dict[str, tuple[int, int | None]]]:
    """{"direct": (port, None), "socat": (port, pid), "portkit": (port, pid), ...} all -> target.

    ``haproxy``: also HAProxy (C, epoll, splice with 1 MiB pipes) when it is installed, as a
    second anchor: what a mature splice forwarder gets on the same machine.
    """
    import tempfile
    from contextlib import ExitStack

    variants = {"portkit": [], **(ALTERNATIVES if alternatives else {})}
    with ExitStack() as stack:
        sp = free_port()
        socat = ["socat", f"TCP-LISTEN:{sp},fork,reuseaddr,bind={HOST}", f"TCP:{HOST}:{target}"]
        out: dict[str, tuple[int, int | None]] = {
            "direct": (target, None),
            "socat": (sp, stack.enter_context(proc(socat, sp)).pid),
        }
        if haproxy and shutil.which("haproxy"):
            hp = free_port()
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="pk-bench-"))
            cfg = os.path.join(tmp, "haproxy.cfg")
            with open(cfg, "w") as f:
                f.write(HAPROXY_CFG.format(host=HOST, port=hp, target=target))
            out["haproxy"] = (hp, stack.enter_context(proc(["haproxy", "-db", "-f", cfg], hp)).pid)
        for name, extra in variants.items():
            pp = free_port()
            pk = [PY, "-m", "portkit", "forward", "--quiet", *extra, f"{HOST}:{pp}:{HOST}:{target}"]
            out[name] = (pp, stack.enter_context(proc(pk, pp)).pid)
        yield out


def iperf(port: int, streams: int, seconds: float) -> float:
    """Gbit/s received; retried when the iperf3 server is still busy with the previous test."""
    err = ""
    for _ in range(5):
        out = subprocess.run(
            ["iperf3", "-c", HOST, "-p", str(port), "-P", str(streams), "-t", str(seconds), "-J"],
            capture_output=True,
            text=True,
        ).stdout
        doc = json.loads(out)
        if "error" not in doc:
            return float(doc["end"]["sum_received"]["bits_per_second"]) / 1e9
        err = str(doc["error"])
        time.sleep(1.0)
    raise RuntimeError(f"iperf3 through port {port}: {err}")


def bench_throughput(
    rounds: int, seconds: float, alternatives: bool, haproxy: bool = False
) -> dict[str, dict[str, float]]:
    tport = free_port()
    res: dict[str, dict[str, float]] = {}
    with proc(["iperf3", "-s", "-p", str(tport)], tport), paths(tport, alternatives, haproxy) as ps:
        for streams in (1, 8):
            got: dict[str, list[float]] = {k: [] for k in ps}
            for _ in range(rounds):
                for name, (port, _pid) in ps.items():
                    got[name].append(iperf(port, streams, seconds))
            res[f"P{streams}"] = {k: statistics.median(v) for k, v in got.items()}
            res[f"P{streams}-all"] = {k: v for k, v in got.items()}  # type: ignore[misc]
    return res


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """user+system seconds of a process, its threads and its reaped children (socat forks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / _TICK


def machine_times() -> tuple[int, int]:
    """(idle + iowait, total) jiffies of all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v)


CpuRows = dict[str, dict[str, list[list[float]]]]
CPU_COLUMNS = ("Gbit/s", "forwarder s/GB", "iperf3 client s/GB", "iperf3 server s/GB", "machine busy")


def bench_cpu(size: str, rounds: int, alternatives: bool, haproxy: bool) -> CpuRows:
    """{"P1": {path: [row per round]}, "P8": ...}; a row is CPU_COLUMNS (s/GB = CPU s per GB moved)."""
    tport = free_port()
    out: CpuRows = {}
    with (
        proc(["iperf3", "-s", "-p", str(tport)], tport) as server,
        paths(tport, alternatives, haproxy) as ps,
    ):
        for streams in (1, 8):
            for _ in range(rounds):
                for name, (port, pid) in ps.items():
                    time.sleep(0.3)  # socat's child has exited and been reaped
                    f0 = cpu_seconds(pid) if pid else 0.0
                    s0, m0, c0 = cpu_seconds(server.pid), machine_times(), os.times()
                    doc = json.loads(
                        subprocess.run(
                            ["iperf3", "-c", HOST, "-p", str(port), "-P", str(streams), "-n", size, "-J"],
                            capture_output=True,
                            text=True,
                        ).stdout
                    )
                    c1, m1, s1 = os.times(), machine_times(), cpu_seconds(server.pid)
                    time.sleep(0.3)
                    f1 = cpu_seconds(pid) if pid else 0.0
                    if "error" in doc:
                        raise RuntimeError(f"iperf3 through port {port}: {doc['error']}")
                    got = doc["end"]["sum_received"]
                    gb = float(got["bytes"]) / 1e9
                    client = (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)
                    busy = 1 - (m1[0] - m0[0]) / max(1, m1[1] - m0[1])
                    row = [
                        float(got["bits_per_second"]) / 1e9,
                        (f1 - f0) / gb,
                        client / gb,
                        (s1 - s0) / gb,
                        busy,
                    ]
                    out.setdefault(f"P{streams}", {}).setdefault(name, []).append(row)
    return out


@contextmanager
def echo_server() -> Iterator[tuple[int, int]]:
    p = subprocess.Popen(
        [PY, "-m", "portkit.drivers.forwarder_echo", "--tcp", "0", "--udp", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None
        _ready, t, u = p.stdout.readline().split()
        yield int(t), int(u)
    finally:
        p.terminate()
        p.wait()


def conn_rate(port: int, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        s = socket.create_connection((HOST, port))
        s.sendall(b"x")
        if s.recv(1) != b"x":
            raise RuntimeError("echo lost")
        s.close()
    return n / (time.perf_counter() - t0)


def latency(port: int, n: int) -> tuple[float, float]:
    s = socket.create_connection((HOST, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    for _ in range(200):  # warm-up
        s.sendall(b"x")
        s.recv(1)
    for _ in range(n):
        t0 = time.perf_counter()
        s.sendall(b"x")
        s.recv(1)
        samples.append((time.perf_counter() - t0) * 1e6)
    s.close()
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def idle_memory(n: int) -> dict[str, float]:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    with echo_server() as (tport, _u), paths(tport) as ps:
        port, pid = ps["portkit"]
        assert pid is not None
        before = rss_kib(pid)
        socks = []
        for _ in range(n):
            s = socket.create_connection((HOST, port))
            socks.append(s)
        for s in socks[:: max(1, n // 50)]:  # every connection is really relayed
            s.sendall(b"x")
            assert s.recv(1) == b"x"
        time.sleep(0.5)
        after = rss_kib(pid)
        for s in socks:
            s.close()
    return {"connections": n, "rss_before_mib": before / 1024, "rss_mib": after / 1024}


def nat_read(n: int) -> dict[str, float] | None:
    """Time the three ways to read conntrack, on an n-flow table in a throwaway namespace."""
    if os.geteuid() != 0 or not shutil.which("conntrack"):
        return None
    import secrets

    ns = f"pk-fwbench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ex = ["ip", "netns", "exec", ns]
        subprocess.run([*ex, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [*ex, "nft", "-f", "-"],
            input="table ip t { chain o { type nat hook output priority -100; udp dport 9 dnat to 127.0.0.1:7; }; }",
            text=True,
            check=True,
        )
        code = (
            "import socket\n"
            f"for i in range({n}):\n"
            " s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.sendto(b'x',('127.0.0.1',9)); s.close()\n"
        )
        subprocess.run([*ex, PY, "-c", code], check=True)
        out: dict[str, float] = {}
        for name, argv in (
            (
                "proc",
                [PY, "-c", "from portkit.ops.forward import nat_entries as n; print(len(n(source='proc')))"],
            ),
            (
                "tool",
                [PY, "-c", "from portkit.ops.forward import nat_entries as n; print(len(n(source='tool')))"],
            ),
            (
                "pyroute2",
                [
                    PY,
                    "-c",
                    "from pyroute2 import Conntrack\nwith Conntrack() as c: print(sum(1 for _ in c.dump_entries()))",
                ],
            ),
        ):
            t0 = time.perf_counter()
            r = subprocess.run([*ex, *argv], capture_output=True, text=True)
            out[name] = time.perf_counter() - t0
            out[name + "_rows"] = float(r.stdout.strip() or -1)
        return out
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("tput", "rate", "latency", "idle", "nat"), action="append")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--alternatives", action="store_true", help="also measure the designs not chosen")
    ap.add_argument(
        "--haproxy", action="store_true", help="throughput/CPU: add HAProxy (splice) as an anchor"
    )
    ap.add_argument(
        "--cpu", metavar="SIZE", help="CPU seconds per GB with iperf3 -n SIZE (e.g. 3G), then exit"
    )
    a = ap.parse_args()
    if a.cpu:
        res = bench_cpu(a.cpu, a.rounds, a.alternatives, a.haproxy)
        for key, by_path in res.items():
            print(
                f"CPU per GB, iperf3 -n {a.cpu} {key} (medians of {a.rounds}; columns: {', '.join(CPU_COLUMNS)})"
            )
            for name, rows in by_path.items():
                med = [statistics.median(r[i] for r in rows) for i in range(len(CPU_COLUMNS))]
                print(
                    f"  {name:14s} {med[0]:5.1f} Gbit/s  forwarder {med[1]:.3f}  client {med[2]:.3f}  "
                    f"server {med[3]:.3f}  busy {med[4]:.2f}  (forwarder rounds: "
                    f"{', '.join(f'{r[1]:.3f}' for r in rows)}; Gbit/s: {', '.join(f'{r[0]:.1f}' for r in rows)})"
                )
        return 0
    todo = set(a.only or ("tput", "rate", "latency", "idle", "nat"))
    ratio: Callable[[float, float], str] = lambda x, y: f"{x / y:.2f}x" if y else "-"  # noqa: E731
    if "tput" in todo:
        tp = bench_throughput(a.rounds, a.seconds, a.alternatives, a.haproxy)
        for key in ("P1", "P8"):
            m = tp[key]
            print(
                f"throughput {key}: direct {m['direct']:.1f}  socat {m['socat']:.1f}  portkit {m['portkit']:.1f} Gbit/s"
                f"  -> portkit/socat {ratio(m['portkit'], m['socat'])}, portkit/direct {ratio(m['portkit'], m['direct'])}"
                + "".join(f", {k} {v:.1f}" for k, v in m.items() if k not in ("direct", "socat", "portkit"))
                + f"  (rounds: {json.dumps({k: [round(x, 1) for x in v] for k, v in tp[key + '-all'].items()})})"  # type: ignore[attr-defined]
            )
    if "rate" in todo or "latency" in todo:
        with echo_server() as (tport, _u), paths(tport, a.alternatives) as ps:
            if "rate" in todo:
                rates = {k: conn_rate(p, a.conns) for k, (p, _pid) in ps.items()}
                print(
                    f"connection rate ({a.conns} sequential, 1 byte echoed): "
                    + "  ".join(f"{k} {v:.0f}/s" for k, v in rates.items())
                    + f"  -> portkit/socat {ratio(rates['portkit'], rates['socat'])}"
                )
            if "latency" in todo:
                lat = {k: latency(p, 5000) for k, (p, _pid) in ps.items()}
                d50, d99 = lat["direct"]
                print(
                    "latency 1-byte round trip p50/p99 (us): "
                    + "  ".join(f"{k} {v[0]:.0f}/{v[1]:.0f}" for k, v in lat.items())
                    + f"  -> added: socat +{lat['socat'][0] - d50:.0f}/+{lat['socat'][1] - d99:.0f}, "
                    f"portkit +{lat['portkit'][0] - d50:.0f}/+{lat['portkit'][1] - d99:.0f}"
                )
    if "idle" in todo:
        m = idle_memory(a.idle)
        print(
            f"idle: {m['connections']:.0f} concurrent connections through portkit: RSS {m['rss_mib']:.1f} MiB "
            f"(at start {m['rss_before_mib']:.1f} MiB; target < 200 MB)"
        )
    if "nat" in todo:
        nr = nat_read(5000)
        if nr is None:
            print("nat: skipped (needs root and the conntrack tool)")
        else:
            print(
                f"nat: reading {nr['proc_rows']:.0f} translated flows (command wall time incl. start-up): "
                f"/proc {nr['proc']:.2f} s, conntrack -L {nr['tool']:.2f} s, "
                f"pyroute2 dump (no parsing) {nr['pyroute2']:.2f} s ({nr['pyroute2_rows']:.0f} rows)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
