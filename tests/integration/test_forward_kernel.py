"""Kernel forwards (nftables DNAT) and `portkit nat`, verified in the port-forward and nat-pat labs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import CliResult, needs_tool, rollback_timers, run_cli, wait_until

pytestmark = [pytest.mark.root, needs_tool("nft"), needs_tool("conntrack")]

PY = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pk(*args: str, timeout: float = 30) -> CliResult:
    return run_cli(*args, timeout=timeout)


@pytest.fixture
def port_forward(lab: Any) -> Iterator[Any]:
    h = lab(os.path.join(ROOT, "examples/labs/port-forward.yaml"))
    yield h
    name = h.netns("router")
    for leftover in (
        f"/run/portkit/forward/{name}.json",
        f"/run/portkit/rollback/forward-{name}.lock",
        f"/run/portkit/rollback/forward-{name}.result.json",
    ):
        if os.path.exists(leftover):
            os.unlink(leftover)


def test_kernel_forward_flow_nat_table_list_remove(port_forward: Any) -> None:
    h = port_forward
    router = h.netns("router")
    inside = h.address("inside")
    r = pk("forward", "--kernel", "--netns", router, f"0.0.0.0:9090:{inside}:2988", "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == 1 and doc["action"] == "added"
    (row,) = doc["forwards"]
    assert row["installed"] and row["masquerade"] and row["listen"] == "0.0.0.0:9090"
    assert "catches traffic to every address of this host from anyone" in r.stderr
    ruleset = h.run("router", ["nft", "list", "table", "inet", "portkit_forward"]).stdout
    assert f"dnat ip to {inside}:2988" in ruleset and "masquerade" in ruleset

    # the flow works across namespaces: client -> router:9090 -> inside:2988 (echo)
    got = h.probe(
        "client", h.address("router", link="wan"), 9090, send=b"through the kernel", source_port=41234
    )
    assert got.state == "open" and got.data == b"through the kernel", got

    # and the translation table shows exactly that flow
    r = pk("nat", "--netns", router, "--port", "9090", "--json")
    assert r.code == 0, r.stderr
    entries = json.loads(r.stdout)["entries"]
    assert len(entries) == 1
    e = entries[0]
    client, router_wan, router_lan = (
        h.address("client"),
        h.address("router", link="wan"),
        h.address("router", link="lan"),
    )
    assert e["proto"] == "tcp" and e["kind"] == "both" and e["port_translated"] is True
    assert e["original"] == {"src": client, "sport": 41234, "dst": router_wan, "dport": 9090}
    assert e["translated"]["src"] == router_lan and e["translated"]["dst"] == inside
    assert e["translated"]["dport"] == 2988 and isinstance(e["translated"]["sport"], int)
    # the same from inside the namespace, through the conntrack tool, as a table
    r = h.portkit("router", "nat", "--port", "9090", "--source", "tool")
    assert (
        r.returncode == 0
        and "SNAT+DNAT" in r.stdout
        and f"{client}:41234 -> {router_wan}:9090 =>" in r.stdout
    )

    # --local: the router's own connections are forwarded too
    r = pk("forward", "--kernel", "--local", "--netns", router, f"0.0.0.0:9191:{inside}:2988")
    assert r.code == 0, r.stderr
    assert h.probe("router", router_wan, 9191, send=b"local").data == b"local"

    r = pk("forward", "--list", "--netns", router, "--json")
    assert r.code == 0
    rows = json.loads(r.stdout)["forwards"]
    assert [(x["listen"], x["local"], x["installed"]) for x in rows] == [
        ("0.0.0.0:9090", False, True),
        ("0.0.0.0:9191", True, True),
    ]
    r = pk("forward", "--remove", "9090/tcp", "--netns", router)
    assert r.code == 0, r.stderr
    assert h.probe("client", router_wan, 9090, timeout=1.0).state != "open"
    r = pk("forward", "--remove", "9090", "--netns", router)
    assert r.code == 2 and "no kernel forward matches '9090'" in r.stderr
    r = pk("forward", "--remove-all", "--netns", router)
    assert r.code == 0
    assert h.run("router", ["nft", "list", "table", "inet", "portkit_forward"]).returncode != 0  # table gone
    assert pk("forward", "--list", "--netns", router).code == 1
    # the lab's own NAT table was never touched
    assert h.run("router", ["nft", "list", "table", "inet", "portkit_lab_nat"]).returncode == 0


def test_kernel_forward_confirm_rollback_and_route_localnet(port_forward: Any) -> None:
    h = port_forward
    router = h.netns("router")
    inside = h.address("inside")
    wan = h.address("router", link="wan")
    assert pk("forward", "--kernel", "--netns", router, f"0.0.0.0:9090:{inside}:2988").code == 0
    r = pk("forward", "--kernel", "--confirm", "2", "--netns", router, f"0.0.0.0:9292:{inside}:2988")
    assert r.code == 0, r.stderr
    assert "rolls back in 2 s unless confirmed" in r.stdout
    assert h.probe("client", wan, 9292, send=b"x").state == "open"

    def table_has(port: int) -> bool:
        return f"dport {port} " in h.run("router", ["nft", "list", "table", "inet", "portkit_forward"]).stdout

    wait_until(lambda: not table_has(9292), timeout=20)  # not confirmed: the previous table comes back by itself
    assert h.probe("client", wan, 9292, timeout=1.0).state != "open"
    assert h.probe("client", wan, 9090, send=b"y").data == b"y"
    listing = json.loads(pk("forward", "--list", "--netns", router, "--json").stdout)["forwards"]
    assert [x["listen"] for x in listing if x["installed"]] == ["0.0.0.0:9090"]

    before = rollback_timers()
    r = pk("forward", "--kernel", "--confirm", "2", "--netns", router, f"0.0.0.0:9393:{inside}:2988")
    assert r.code == 0
    ours = rollback_timers() - before
    assert ours
    assert pk("forward", "--confirm-ok", "--netns", router).code == 0
    wait_until(lambda: not ours & rollback_timers(), timeout=20)  # the timer is gone: nothing can fire
    assert table_has(9393)
    assert h.probe("client", wan, 9393, send=b"kept").data == b"kept"

    # a loopback target for other hosts' traffic needs route_localnet, only when asked
    r = pk("forward", "--kernel", "--netns", router, "0.0.0.0:9494:127.0.0.1:7777")
    assert r.code == 2 and "--route-localnet" in r.stderr and "martians" in r.stderr
    assert h.run("router", ["cat", "/proc/sys/net/ipv4/conf/all/route_localnet"]).stdout.strip() == "0"
    r = pk("forward", "--kernel", "--route-localnet", "--netns", router, "0.0.0.0:9494:127.0.0.1:7777")
    assert r.code == 0, r.stderr
    assert "route_localnet=1" in r.stderr
    assert h.run("router", ["cat", "/proc/sys/net/ipv4/conf/all/route_localnet"]).stdout.strip() == "1"
    pk("forward", "--remove-all", "--netns", router)


def test_nat_pat_table_shows_the_exact_port_translation(lab: Any) -> None:
    h = lab(os.path.join(ROOT, "examples/labs/nat-pat.yaml"))
    server = h.address("server")
    a = h.probe("client1", server, 7, send=b"one", source_port=40000)
    b = h.probe("client2", server, 7, send=b"two", source_port=40000)
    assert a.data == b"one" and b.data == b"two"
    r = pk("nat", "--netns", h.netns("router"), "--proto", "tcp", "--port", "7", "--json")
    assert r.code == 0, r.stderr
    entries = sorted(json.loads(r.stdout)["entries"], key=lambda e: e["original"]["src"])
    assert len(entries) == 2
    wan = h.address("router", link="wan")
    first, second = entries
    assert first["original"] == {"src": h.address("client1"), "sport": 40000, "dst": server, "dport": 7}
    assert first["translated"] == {"src": wan, "sport": 40000, "dst": server, "dport": 7}
    assert first["kind"] == "snat" and first["port_translated"] is False
    assert second["original"] == {"src": h.address("client2"), "sport": 40000, "dst": server, "dport": 7}
    assert second["kind"] == "snat" and second["port_translated"] is True
    assert second["translated"]["src"] == wan and second["translated"]["sport"] != 40000
    # what the server saw is what the table says (its peer is the router's translated port)
    table = pk("nat", "--netns", h.netns("router"), "--host", h.address("client2")).stdout
    assert (
        f"PAT   tcp    {h.address('client2')}:40000 -> {wan}:{second['translated']['sport']} -> {server}:7"
        in table
    )
    # UDP is translated too; filters that match nothing exit 1
    h.probe("client1", server, 7, proto="udp", send=b"u", source_port=5353)
    r = pk("nat", "--netns", h.netns("router"), "--proto", "udp", "--json")
    assert [e["original"]["sport"] for e in json.loads(r.stdout)["entries"]] == [5353]
    assert pk("nat", "--netns", h.netns("router"), "--port", "1").code == 1


def test_nat_watch_prints_new_flows(lab: Any) -> None:
    h = lab(os.path.join(ROOT, "examples/labs/nat-pat.yaml"))
    p = subprocess.Popen(
        [PY, "-m", "portkit", "nat", "--watch", "--interval", "0.2", "--netns", h.netns("router")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert p.stdout is not None
        p.stdout.readline()  # the first table (or "no translated flow"): the watch loop runs
        h.probe("client1", h.address("server"), 80, send=b"GET / HTTP/1.0\r\n\r\n", source_port=40123)
        end = time.monotonic() + 10
        assert p.stdout is not None
        while time.monotonic() < end:
            line = p.stdout.readline()
            if "+ SNAT" in line and ":40123 ->" in line:
                break
        else:
            pytest.fail("no '+ SNAT' line for the new flow")
    finally:
        p.terminate()
        p.wait(5)


def test_userspace_forwarder_inside_a_namespace(port_forward: Any) -> None:
    """`portkit forward --netns` on the router relays from the outside client to the inside host."""
    h = port_forward
    inside = h.address("inside")
    wan = h.address("router", link="wan")
    p = subprocess.Popen(
        [
            PY,
            "-m",
            "portkit",
            "forward",
            "--netns",
            h.netns("router"),
            "--allow",
            "198.51.100.0/24",
            f"0.0.0.0:9595:{inside}:2988",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stderr is not None
        assert "forwarding 0.0.0.0:9595/tcp" in p.stderr.readline()
        got = h.probe("client", wan, 9595, send=b"userspace across namespaces")
        assert got.state == "open" and got.data == b"userspace across namespaces", got
        assert h.probe("inside", h.address("router", link="lan"), 9595, send=b"x").data == b""  # not allowed
    finally:
        p.terminate()
        p.wait(15)


def test_nat_watch_ctrl_c_is_130_and_netns_pid_reads_that_namespace(lab: Any) -> None:
    h = lab(os.path.join(ROOT, "examples/labs/nat-pat.yaml"))
    w = subprocess.Popen(
        [PY, "-m", "portkit", "nat", "--watch", "--interval", "0.2", "--netns", h.netns("router")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert w.stdout is not None
        w.stdout.readline()  # the first table (or "no translated flow"): the watch loop runs
        w.send_signal(signal.SIGINT)
        _out, err = w.communicate(timeout=15)
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
    assert w.returncode == 130 and "Traceback" not in err

    got = h.probe("client1", h.address("server"), 80, send=b"GET / HTTP/1.0\r\n\r\n", source_port=40321)
    assert got.state == "open", got
    inside = h.popen("router", ["sleep", "60"])  # any process of the router's namespace
    try:
        r = pk("nat", "--netns-pid", str(inside.pid), "--port", "40321", "--json")
        assert r.code == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["schema"] == 1
        (entry,) = doc["entries"]
        assert entry["kind"] == "snat" and entry["original"]["src"] == h.address("client1")
        assert entry["original"]["sport"] == 40321 and entry["translated"]["src"] == h.address(
            "router", link="wan"
        )
        tool = pk("nat", "--netns-pid", str(inside.pid), "--port", "40321", "--source", "tool", "--json")
        assert tool.code == 0, tool.stderr

        def flows(d: dict[str, Any]) -> list[dict[str, Any]]:  # timeout_s ticks between reads
            return [{k: v for k, v in e.items() if k != "timeout_s"} for e in d["entries"]]

        assert flows(json.loads(tool.stdout)) == flows(doc)
        # this host's own namespace has no such flow
        assert pk("nat", "--port", "40321").code == 1
    finally:
        inside.kill()
        inside.wait()


def test_kernel_local_forward_from_loopback_needs_route_localnet(lab: Any) -> None:
    """`--kernel --local` to another host: this host's connection to 127.0.0.1:PORT leaves
    with a 127.0.0.1 source and hangs, so portkit warns; --route-localnet makes it work."""
    h = lab(os.path.join(ROOT, "examples/labs/port-forward.yaml"))
    router = h.netns("router")
    spec = f"9595:{h.address('inside')}:2988"
    connect = [
        "python3",
        "-c",
        "import socket; socket.create_connection(('127.0.0.1', 9595), timeout=2).close()",
    ]
    try:
        r = pk("forward", "--kernel", "--local", "--netns", router, spec)
        assert r.code == 0, r.stderr
        assert "own connections to 127.0.0.1:9595 cannot reach" in r.stderr and "--route-localnet" in r.stderr
        assert h.run("router", connect).returncode != 0  # the warning tells the truth
        r = pk("forward", "--kernel", "--local", "--route-localnet", "--netns", router, spec)
        assert r.code == 0 and "cannot reach" not in r.stderr, r.stderr
        assert h.run("router", ["cat", "/proc/sys/net/ipv4/conf/all/route_localnet"]).stdout.strip() == "1"
        done = h.run("router", connect)
        assert done.returncode == 0, done.stderr
    finally:
        pk("forward", "--remove-all", "--netns", router)
        state = f"/run/portkit/forward/{router}.json"
        if os.path.exists(state):
            os.unlink(state)


def test_kernel_remove_names_a_bad_port_or_protocol(lab: Any) -> None:
    h = lab(os.path.join(ROOT, "examples/labs/port-forward.yaml"))
    router = h.netns("router")
    try:
        assert (
            pk("forward", "--kernel", "--netns", router, f"9696:{h.address('inside')}:2988").code == 0
        )
        for text, words in (
            ("9696/sctp", "invalid protocol 'sctp' in --remove '9696/sctp'"),
            ("70000", "invalid port 70000 in --remove '70000'"),
            ("9696/", "invalid protocol '' in --remove '9696/'"),
            ("9696/udp", "no kernel forward matches '9696/udp'"),
        ):
            r = pk("forward", "--remove", text, "--netns", router)
            assert r.code == 2 and r.stderr.count("\n") == 1 and words in r.stderr, r.stderr
        r = pk("forward", "--remove", "9696/TCP", "--netns", router, "--json")
        assert r.code == 0, r.stderr
        assert json.loads(r.stdout)["changed"] == [f"0.0.0.0:9696:{h.address('inside')}:2988/tcp"]
    finally:
        pk("forward", "--remove-all", "--netns", router)
        state = f"/run/portkit/forward/{router}.json"
        if os.path.exists(state):
            os.unlink(state)

