"""The report, ls, who, free and info commands against real listeners the tests start.

Most tests look into a namespace of their own (``pk-insp-<random>``), where the ports are
known to be free and nothing else listens; the namespace is removed at the end even on
failure. A few run in the host namespace (the default path, unprivileged runs).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tests.conftest import IS_ROOT, CliResult, needs_tool
from tests.conftest import run_cli as portkit

pytestmark = [needs_tool("ip")]  # tests that look into a namespace of their own are marked root

LISTENER = r"""
import os, socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
opts = sys.argv[4:]
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
if fam == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if "dual" in opts else 1)
s.bind((host, port))
if kind == "tcp":
    s.listen(16)
if "fork" in opts and os.fork() == 0:
    sys.stdin.read(); os._exit(0)
print("ready", flush=True)
sys.stdin.read()
"""

SOCKET_KEYS: dict[str, Any] = {
    "proto": str, "family": str, "local_address": str, "local_port": int, "remote_address": (str, type(None)),
    "remote_port": (int, type(None)), "state": str, "pid": (int, type(None)), "process": (str, type(None)),
    "user": (str, type(None)), "processes": list, "service": (str, type(None)), "port_class": str, "exposure": str,
    "inbound": object, "inbound_rule": object, "container": (dict, type(None)),
}  # fmt: skip
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_json(proc: CliResult) -> dict[str, Any]:
    assert proc.stderr == "" or "warning" in proc.stderr, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    assert doc["schema"] == 1
    return doc


def check_socket_shape(s: dict[str, Any]) -> None:
    assert list(s) == list(SOCKET_KEYS)  # every key, in contract order
    for key, typ in SOCKET_KEYS.items():
        assert isinstance(s[key], typ), (key, s[key])
    assert s["proto"] in ("tcp", "udp") and s["family"] in ("ipv4", "ipv6")
    assert s["port_class"] in ("well-known", "registered", "dynamic")
    assert s["exposure"] in ("loopback", "all", "address")
    for p in s["processes"]:
        assert set(p) == {"pid", "name", "user"} and isinstance(p["pid"], int)
    if s["processes"]:
        assert s["pid"] == min(p["pid"] for p in s["processes"]) and s["process"] == s["processes"][0]["name"]


class Namespace:
    def __init__(self) -> None:
        self.name = f"pk-insp-{secrets.token_hex(3)}"
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str, prefix: Sequence[str] = ()) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *prefix, sys.executable, "-c", LISTENER, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", f"listener {args} failed"
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture(scope="module")
def ns() -> Iterator[Namespace]:
    n = Namespace()
    subprocess.run(["ip", "netns", "add", n.name], check=True)
    try:
        subprocess.run(["ip", "-n", n.name, "link", "set", "lo", "up"], check=True)
        n.start("tcp", "0.0.0.0", "8080")
        n.start("tcp", "::1", "9000")
        n.start("tcp", "::", "8443", "dual")
        n.start("udp", "0.0.0.0", "5353")
        n.start("udp", "::", "53")
        n.start("tcp", "0.0.0.0", "6379")  # a cache on all interfaces: a note
        n.start("tcp", "127.0.0.1", "5432")  # a database on loopback: no note
        n.start("tcp", "127.0.0.1", "40000")  # inside the ephemeral range: a note
        n.start("tcp", "0.0.0.0", "7070", "fork")  # one socket, two processes
        n.start("tcp", "0.0.0.0", "7171", prefix=NOBODY)  # another user's process
        yield n
    finally:
        n.close()


def by_port(doc: dict[str, Any]) -> dict[tuple[str, int, str], dict[str, Any]]:
    return {(s["proto"], s["local_port"], s["family"]): s for s in doc["sockets"]}


@pytest.mark.root
def test_ls_sees_the_namespace(ns: Namespace) -> None:
    doc = as_json(portkit("ls", "--json", "--netns", ns.name))
    for s in doc["sockets"]:
        check_socket_shape(s)
    socks = by_port(doc)
    assert set(socks) >= {
        ("tcp", 8080, "ipv4"), ("tcp", 9000, "ipv6"), ("tcp", 8443, "ipv6"), ("udp", 5353, "ipv4"),
        ("udp", 53, "ipv6"), ("tcp", 6379, "ipv4"), ("tcp", 5432, "ipv4"), ("tcp", 40000, "ipv4"),
        ("tcp", 7070, "ipv4"), ("tcp", 7171, "ipv4"),
    }  # fmt: skip
    assert socks[("tcp", 8080, "ipv4")]["exposure"] == "all"
    assert socks[("tcp", 9000, "ipv6")]["exposure"] == "loopback"
    dual = socks[("tcp", 8443, "ipv6")]
    assert (dual["local_address"], dual["exposure"], dual["state"]) == ("::", "all", "LISTEN")
    udp = socks[("udp", 53, "ipv6")]
    assert (udp["state"], udp["service"], udp["port_class"], udp["remote_address"]) == ("UNCONN", "domain", "well-known", None)
    first = socks[("tcp", 8080, "ipv4")]
    assert first["pid"] == ns.procs[0].pid and first["process"].startswith("python") and first["user"] == "root"
    shared = socks[("tcp", 7070, "ipv4")]
    assert len(shared["processes"]) == 2 and shared["pid"] == ns.procs[8].pid
    other = socks[("tcp", 7171, "ipv4")]
    assert other["user"] == "nobody" and other["processes"][0]["user"] == "nobody"
    assert other["pid"] == ns.procs[9].pid


@pytest.mark.root
def test_ls_filters(ns: Namespace) -> None:
    def ports(*args: str) -> set[int]:
        return {s["local_port"] for s in as_json(portkit("ls", "--json", "--netns", ns.name, *args))["sockets"]}

    assert ports("--udp") == {53, 5353}  # the module's listeners; other tests add TCP ones only
    assert ports("-6") == {9000, 8443, 53}
    assert ports("-4", "--tcp", "--port", "8080") == {8080}
    assert ports("--pid", str(ns.procs[1].pid)) == {9000}
    assert ports("--process", "python", "--port", "7171") == {7171}
    assert ports("--process", "nginx") == set()
    assert ports("--state", "LISTEN", "--udp") == set()
    assert ports("--state", "UNCONN") == {53, 5353}


@pytest.mark.root
def test_netns_pid_and_table(ns: Namespace) -> None:
    doc = as_json(portkit("ls", "--json", "--netns-pid", str(ns.procs[0].pid), "--port", "9000"))
    assert [s["local_port"] for s in doc["sockets"]] == [9000]
    text = portkit("ls", "--netns", ns.name, "--color", "never")
    assert text.code == 0 and "\x1b" not in text.stdout
    assert "[::1]:9000" in text.stdout and "0.0.0.0:7070" in text.stdout and "python" in text.stdout


@pytest.mark.root
def test_report_sorted_with_notes(ns: Namespace) -> None:
    proc = portkit("report", "--json", "--netns", ns.name)
    assert proc.code == 0
    doc = as_json(proc)
    ports = [s["local_port"] for s in doc["sockets"]]
    assert ports == sorted(ports)
    notes = {(n["code"], n["port"], n["proto"]) for n in doc["notes"]}
    assert ("exposed-sensitive", 6379, "tcp") in notes
    assert ("ephemeral-listener", 40000, "tcp") in notes
    assert not any(n[1] == 5432 for n in notes)
    for n in doc["notes"]:
        assert set(n) == {"code", "port", "proto", "message"} and isinstance(n["message"], str)
    text = portkit("--netns", ns.name).stdout  # no command: the report
    assert text.splitlines()[0].split()[:3] == ["PROTO", "ADDRESS", "PORT"]
    assert "Notes:" in text and "6379/tcp" in text
    assert "\x1b[" in portkit("report", "--netns", ns.name, "--color", "always").stdout


@pytest.mark.root
def test_ls_all_shows_connections(ns: Namespace) -> None:
    code = (
        "import socket,sys; c=socket.create_connection(('127.0.0.1',8080)); "
        "print(c.getsockname()[1], flush=True); sys.stdin.read()"
    )
    p = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        cport = int(p.stdout.readline())
        doc = as_json(portkit("ls", "--json", "--all", "--netns", ns.name, "--port", "8080"))
        states = {(s["local_port"], s["state"], s["remote_port"]) for s in doc["sockets"]}
        assert (cport, "ESTABLISHED", 8080) in states and (8080, "LISTEN", None) in states
        # Not accepted yet: the server side has no file and so no process.
        server = next(s for s in doc["sockets"] if s["local_port"] == 8080 and s["state"] == "ESTABLISHED")
        assert server["remote_port"] == cport and server["pid"] is None
        est = as_json(portkit("ls", "--json", "--state", "established", "--netns", ns.name))
        assert {s["state"] for s in est["sockets"]} == {"ESTABLISHED"}
        client = next(s for s in est["sockets"] if s["local_port"] == cport)
        assert client["pid"] == p.pid
    finally:
        p.kill()
        p.wait()


@pytest.mark.root
def test_who(ns: Namespace) -> None:
    proc = portkit("who", "7070/tcp", "--json", "--netns", ns.name)
    assert proc.code == 0
    doc = as_json(proc)
    assert doc["port"] == 7070 and len(doc["holders"]) == 1
    h = doc["holders"][0]
    check_socket_shape({k: v for k, v in h.items() if k not in ("cmdline", "started")})
    assert "7070" in h["cmdline"] and h["cmdline"].startswith(sys.executable)
    started = dt.datetime.fromisoformat(h["started"])
    assert abs((dt.datetime.now(dt.UTC) - started).total_seconds()) < 600
    assert h["processes"][0]["pid"] == ns.procs[8].pid
    udp = as_json(portkit("who", "53", "--json", "--netns", ns.name))
    assert [x["proto"] for x in udp["holders"]] == ["udp"]
    nobody = portkit("who", "7171/udp", "--netns", ns.name)
    assert nobody.code == 1 and "Nobody holds port 7171/udp" in nobody.stdout
    text = portkit("who", "9000", "--netns", ns.name)
    assert text.code == 0 and "[::1]:9000" in text.stdout and "LISTEN" in text.stdout


@pytest.mark.root
def test_who_kill(ns: Namespace) -> None:
    victim = ns.start("tcp", "127.0.0.1", "7272")
    # No terminal to ask on and no --yes: refuse, kill nothing.
    refused = portkit("who", "7272", "--kill", "--netns", ns.name, start_new_session=True)
    assert refused.code == 2 and "refusing to kill" in refused.stderr and "--yes" in refused.stderr
    assert victim.poll() is None
    killed = portkit("who", "7272", "--kill", "--yes", "--timeout", "5", "--netns", ns.name, "--json")
    assert killed.code == 0, killed.stderr
    doc = json.loads(killed.stdout)
    assert doc["signals"] == [{"pid": victim.pid, "signal": "SIGTERM", "exited": True}]
    assert victim.wait(timeout=5) == -15
    assert portkit("who", "7272", "--netns", ns.name).code == 1


def test_who_kill_force() -> None:
    code = "import signal,socket,sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); print(s.getsockname()[1], flush=True); sys.stdin.read()"
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        port = p.stdout.readline().strip()
        stubborn = portkit("who", port, "--kill", "--yes", "--timeout", "0.3")
        assert stubborn.code == 1 and "still running" in stubborn.stdout
        forced = portkit("who", port, "--kill", "--yes", "--timeout", "0.3", "--force")
        assert forced.code == 0 and "SIGKILL" in forced.stdout
        assert p.wait(timeout=5) == -9
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["info", "70000"], "invalid port '70000'; valid ports are 0-65535"),
        (["who", "abc"], "invalid port 'abc'; a port is a number 1-65535"),
        (["free", "--range", "9-3"], "invalid range '9-3'; a range is LOW-HIGH with 1 <= LOW <= HIGH <= 65535"),
        (["ls", "--state", "NOPE"], "invalid state 'NOPE'; valid states are: ESTABLISHED, SYN_SENT"),
        (["ls", "--port", "0"], "invalid port '0'; valid ports are 1-65535"),
        (["ls", "--netns", "pk-insp-does-not-exist"], "no network namespace named 'pk-insp-does-not-exist'"),
        (["who", "80", "--signal", "TERM"], "--signal, --timeout and --force apply only with --kill"),
        (["who", "80", "--kill", "--signal", "NOPE"], "invalid signal 'NOPE'; valid signals are:"),
        (["free", "--count", "0"], "invalid count '0': must be 1-1000"),
        (["info", "no-such-service-zz"], "unknown port or service 'no-such-service-zz'"),
    ],
)
def test_bad_input(args: list[str], needle: str) -> None:
    proc = portkit(*args)
    assert proc.code == 2
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def _binds(port: int, kind: int) -> bool:
    for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        with socket.socket(fam, kind) as s:
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def test_free() -> None:
    doc = as_json(portkit("free", "--count", "3", "--json"))
    ports = doc["ports"]
    assert len(ports) == 3 and all(isinstance(p, int) for p in ports)
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo, _hi = (int(x) for x in f.read().split())
    assert all(1024 <= p < lo for p in ports)
    assert any(_binds(p, socket.SOCK_STREAM) for p in ports)  # others may grab one meanwhile
    udp = as_json(portkit("free", "--udp", "--range", "20000-20100", "--json"))["ports"]
    assert len(udp) == 1 and 20000 <= udp[0] <= 20100
    # A port held on :: only is not free, even though 0.0.0.0 would bind.
    with socket.socket(socket.AF_INET6) as held:
        held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        held.bind(("::", 0))
        held.listen()
        port = held.getsockname()[1]
        none = portkit("free", "--range", f"{port}-{port}")
        assert none.code == 1 and "only 0 of 1" in none.stderr and none.stdout == ""
    plain = portkit("free")
    assert plain.code == 0 and plain.stdout.strip().isdigit()


def test_info() -> None:
    doc = as_json(portkit("info", "ssh", "--json"))
    assert list(doc) == ["schema", "port", "port_class", "services", "ephemeral", "note"]
    assert doc["port"] == 22 and doc["port_class"] == "well-known" and doc["ephemeral"] is False
    assert {"name": "ssh", "proto": "tcp"}.items() <= doc["services"][0].items()
    assert all(set(s) == {"name", "proto", "description"} for s in doc["services"])
    assert isinstance(doc["note"], str)
    rdp = as_json(portkit("info", "3389", "--json"))
    assert rdp["port_class"] == "registered" and "attacked" in rdp["note"]
    dyn = as_json(portkit("info", "50000", "--json"))
    assert dyn["port_class"] == "dynamic" and dyn["ephemeral"] is True
    text = portkit("info", "445").stdout
    assert "well-known (0-1023)" in text and "microsoft-ds" in text


def test_host_namespace_and_unprivileged_view() -> None:
    """The default path (no --netns), and what user nobody sees of root's socket."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = str(s.getsockname()[1])
        root = as_json(portkit("ls", "--json", "--port", port))
        me = pwd.getpwuid(os.geteuid()).pw_name
        assert [(x["pid"], x["user"], x["exposure"]) for x in root["sockets"]] == [(os.getpid(), me, "loopback")]
        if not IS_ROOT:
            return
        env = dict(os.environ, HOME="/")
        seen = portkit("ls", "--json", "--port", port, prefix=NOBODY, env=env, cwd="/")
        assert seen.code == 0, seen.stderr
        doc = json.loads(seen.stdout)
        assert [(x["pid"], x["process"], x["user"]) for x in doc["sockets"]] == [(None, None, "root")]
        assert seen.stderr.count("need root") == 1


def test_who_nobody_json() -> None:
    proc = portkit("who", "1", "--json")
    assert proc.code == 1 and json.loads(proc.stdout) == {"schema": 1, "port": 1, "holders": []}


@pytest.mark.parametrize(("answer", "ends"), [("y\n", True), ("n\n", False)])
@pytest.mark.root
def test_who_kill_asks_on_a_terminal(ns: Namespace, answer: str, ends: bool) -> None:
    import pty

    victim = ns.start("tcp", "127.0.0.1", "7373")
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "portkit", "who", "7373", "--kill", "--signal", "INT", "--netns", ns.name],
            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        os.write(master, answer.encode())
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(master)
        os.close(slave)
    assert "Send SIGINT to" in err and f"{victim.pid} (python" in err
    if ends:
        assert proc.returncode == 0 and "sent SIGINT to pid" in out
        assert victim.wait(timeout=5) != 0
    else:
        assert proc.returncode == 1 and "nothing killed" in err
        assert victim.poll() is None
        victim.kill()
        victim.wait()


@pytest.mark.root
def test_psutil_fallback_through_the_cli(ns: Namespace) -> None:
    env = dict(os.environ, PORTKIT_SOCKET_BACKEND="psutil")
    with socket.socket(socket.AF_INET6) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))
        s.listen()
        port = str(s.getsockname()[1])
        doc = as_json(portkit("ls", "--json", "--port", port, env=env))
        [entry] = doc["sockets"]
        check_socket_shape(entry)
        assert (entry["local_address"], entry["exposure"], entry["pid"], entry["user"]) == ("::", "all", os.getpid(), "root")
    refused = portkit("ls", "--netns", ns.name, env=env)
    assert refused.code == 4 and "psutil socket backend cannot look into another network namespace" in refused.stderr


@needs_tool("nft")
@pytest.mark.root
def test_new_syn_recv_state(ns: Namespace) -> None:
    """A handshake whose last ACK is dropped (by a rule inside our namespace only) leaves a
    request socket (NEW_SYN_RECV in the kernel) on the server side, with no process."""
    rules = """
table inet pkinsp {
    chain out {
        type filter hook output priority 0; policy accept;
        tcp dport 7575 tcp flags & (syn | ack) == ack drop
    }
}
"""
    subprocess.run(["ip", "netns", "exec", ns.name, "nft", "-f", "-"], input=rules, text=True, check=True)
    server = ns.start("tcp", "127.0.0.1", "7575")
    code = "import socket,sys; c=socket.socket(); c.connect(('127.0.0.1',7575)); print('ok', flush=True); sys.stdin.read()"
    client = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "ok"
        for state in ("NEW_SYN_RECV", "syn-recv"):
            doc = as_json(portkit("ls", "--json", "--state", state, "--netns", ns.name))
            [half] = doc["sockets"]
            # The kernel reports request sockets as SYN_RECV (so do /proc/net/tcp and ss).
            assert (half["local_port"], half["state"], half["pid"]) == (7575, "SYN_RECV", None)
            assert half["remote_address"] == "127.0.0.1"
        ss = subprocess.run(["ip", "netns", "exec", ns.name, "ss", "-tnH", "state", "syn-recv"], capture_output=True, text=True)
        assert ":7575" in ss.stdout
    finally:
        client.kill()
        client.wait()
        server.kill()
        server.wait()
        subprocess.run(["ip", "netns", "exec", ns.name, "nft", "delete", "table", "inet", "pkinsp"], check=False)


@pytest.mark.root
def test_who_explains_time_wait(ns: Namespace) -> None:
    """Nobody holds the port, yet bind() fails: the closed connection waits in TIME_WAIT."""
    code = (
        "import socket; s=socket.socket(); s.bind(('127.0.0.1',7676)); s.listen(); "
        "c=socket.create_connection(('127.0.0.1',7676)); a,_=s.accept(); a.close(); c.close(); s.close()"
    )
    subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c", code], check=True)
    proc = portkit("who", "7676", "--netns", ns.name)
    assert proc.code == 1
    assert "Nobody holds port 7676." in proc.stdout and "TIME_WAIT" in proc.stdout
    assert json.loads(portkit("who", "7676", "--json", "--netns", ns.name).stdout)["holders"] == []


def test_who_trailing_slash_is_one_line_exit_2() -> None:
    r = portkit("who", "80/")
    assert r.code == 2 and r.stdout == ""
    assert r.stderr == "portkit: invalid protocol '' in '80/'; valid protocols are: tcp, udp\n"
