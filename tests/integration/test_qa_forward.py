"""QA of ``portkit forward`` / ``portkit nat`` as a user drives them: Ctrl-C is exit 130
with no traceback (SIGTERM stays 0), a second Ctrl-C cuts the drain short, option values
out of range are one line and exit 2, and ``nat --netns-pid`` reads a process's namespace."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import needs_root, needs_tool
from tests.integration.forward_helpers import HOST, echo_target, forwarder, free_port

PY = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pk(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "portkit", *args], capture_output=True, text=True, timeout=timeout)


def test_ctrl_c_exits_130_after_draining_and_sigterm_exits_0() -> None:
    port = free_port()
    with echo_target() as (tport, _), forwarder(f"{port}:{tport}") as fwd:
        fwd.proc.send_signal(signal.SIGINT)
        assert fwd.proc.wait(15) == 130
        log = fwd.wait_log("portkit: interrupted")
        assert "Traceback" not in log and "KeyboardInterrupt" not in log
        assert log.strip().splitlines()[-1] == "portkit: interrupted: stopped forwarding"
    with echo_target() as (tport, _), forwarder(f"{port}:{tport}") as fwd:
        fwd.proc.send_signal(signal.SIGTERM)
        assert fwd.proc.wait(15) == 0
        assert "interrupted" not in fwd.log()


def test_second_ctrl_c_closes_open_connections_without_waiting_for_the_drain() -> None:
    port = free_port()
    with echo_target() as (tport, _), forwarder(f"{port}:{tport}", "--drain", "600") as fwd:
        c = socket.create_connection((HOST, port), timeout=5)
        try:
            c.sendall(b"a")
            assert c.recv(1) == b"a"
            fwd.proc.send_signal(signal.SIGINT)
            fwd.wait_log("draining 1 open connections")
            assert fwd.proc.poll() is None  # the first Ctrl-C drains
            fwd.proc.send_signal(signal.SIGINT)
            # Well inside the 600 s drain: only the second Ctrl-C can end it this soon.
            assert fwd.proc.wait(30) == 130
            log = fwd.log()
            assert "interrupted again: closing open connections now" in log
            assert "Traceback" not in log
        finally:
            c.close()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--stats", "0", "8080:2988"], "argument --stats: invalid stats interval '0'"),
        (["--stats", "-1", "8080:2988"], "argument --stats: invalid stats interval '-1'"),
        (["--kernel", "--confirm", "0", "8080:10.0.0.2:80"], "argument --confirm: invalid confirmation timeout '0'"),
        (["--kernel", "--confirm", "-5", "8080:10.0.0.2:80"], "argument --confirm: invalid confirmation timeout '-5'"),
        (["--list", "8080:2988"], "take no SPEC (got '8080:2988')"),
        (["--remove-all", "8080"], "take no SPEC (got '8080')"),
        (["--drain", "-1", "8080:2988"], "argument --drain: invalid drain time '-1'"),
        (["--bulk-threads", "-1", "8080:2988"], "argument --bulk-threads: invalid number of bulk threads '-1'"),
        (["--udp-idle", "0", "8080:2988"], "argument --udp-idle: invalid UDP idle timeout '0'"),
        (["--allow", "10.0.0.0/33", "8080:2988"], "invalid CIDR block '10.0.0.0/33'"),
        (["--json", "0.0.0.0:8080:127.0.0.1:2988"], "--json applies to --check, --list, --remove and --kernel"),
    ],
)
def test_bad_option_values_are_one_line_exit_2(args: list[str], words: str) -> None:
    r = pk("forward", *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and words in r.stderr and "Traceback" not in r.stderr
    assert "forwarding" not in r.stderr


@needs_root
@needs_tool("conntrack")
@pytest.mark.root
def test_nat_watch_ctrl_c_is_130_and_netns_pid_reads_that_namespace(lab: Any) -> None:
    h = lab(os.path.join(ROOT, "examples/labs/nat-pat.yaml"))
    w = subprocess.Popen(
        [PY, "-m", "portkit", "nat", "--watch", "--interval", "0.2", "--netns", h.netns("router")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
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
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["schema"] == 1
        (entry,) = doc["entries"]
        assert entry["kind"] == "snat" and entry["original"]["src"] == h.address("client1")
        assert entry["original"]["sport"] == 40321 and entry["translated"]["src"] == h.address(
            "router", link="wan"
        )
        tool = pk("nat", "--netns-pid", str(inside.pid), "--port", "40321", "--source", "tool", "--json")
        assert tool.returncode == 0, tool.stderr

        def flows(d: dict[str, Any]) -> list[dict[str, Any]]:  # timeout_s ticks between reads
            return [{k: v for k, v in e.items() if k != "timeout_s"} for e in d["entries"]]

        assert flows(json.loads(tool.stdout)) == flows(doc)
        # this host's own namespace has no such flow
        assert pk("nat", "--port", "40321").returncode == 1
    finally:
        inside.kill()
        inside.wait()


def test_check_json_is_a_document_with_every_forward() -> None:
    r = pk("forward", "--check", "--json", "18090:2988", "0.0.0.0:5353:10.0.0.2:53/udp")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == 1 and doc["action"] == "check"
    first, second = doc["forwards"]
    assert first["spec"] == "127.0.0.1:18090:127.0.0.1:2988/tcp" and first["listen_port"] == 18090
    assert second["proto"] == "udp" and second["target"] == "10.0.0.2:53" and second["allow"] == []
    assert doc["options"]["drain"] == 10.0
    assert len(doc["warnings"]) == 1 and "0.0.0.0:5353/udp listens beyond loopback" in doc["warnings"][0]


@needs_root
@needs_tool("nft")
@pytest.mark.root
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
        assert r.returncode == 0, r.stderr
        assert "own connections to 127.0.0.1:9595 cannot reach" in r.stderr and "--route-localnet" in r.stderr
        assert h.run("router", connect).returncode != 0  # the warning tells the truth
        r = pk("forward", "--kernel", "--local", "--route-localnet", "--netns", router, spec)
        assert r.returncode == 0 and "cannot reach" not in r.stderr, r.stderr
        assert h.run("router", ["cat", "/proc/sys/net/ipv4/conf/all/route_localnet"]).stdout.strip() == "1"
        done = h.run("router", connect)
        assert done.returncode == 0, done.stderr
    finally:
        pk("forward", "--remove-all", "--netns", router)
        state = f"/run/portkit/forward/{router}.json"
        if os.path.exists(state):
            os.unlink(state)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--port", "abc"], "invalid port 'abc'; valid ports are 1-65535"),
        (["--port", "70000"], "invalid port '70000'; valid ports are 1-65535"),
        (["--interval", "0", "--watch"], "invalid interval '0'"),
        (["--interval", "nan", "--watch"], "invalid interval 'nan'"),
        (["--host", "10.0.0.0/33"], "invalid --host '10.0.0.0/33'"),
        (["--proto", "xyz"], "invalid protocol 'xyz'"),
    ],
)
def test_nat_bad_input_is_one_line_exit_2(args: list[str], words: str) -> None:
    r = pk("nat", *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and words in r.stderr and "Traceback" not in r.stderr


def test_binary_config_file_is_one_line_exit_2(tmp_path: Any) -> None:
    blob = tmp_path / "fwd.yaml"
    blob.write_bytes(b"forwards:\n  - '1:2'\n\xd0\xff\xfe")
    r = pk("forward", "--check", "--config", str(blob))
    assert (
        r.returncode == 2
        and r.stderr == f"portkit: {blob}: not a text file; a forward config is YAML text (UTF-8)\n"
    )


@needs_root
@needs_tool("nft")
@pytest.mark.root
def test_kernel_remove_names_a_bad_port_or_protocol(lab: Any) -> None:
    h = lab(os.path.join(ROOT, "examples/labs/port-forward.yaml"))
    router = h.netns("router")
    try:
        assert (
            pk("forward", "--kernel", "--netns", router, f"9696:{h.address('inside')}:2988").returncode == 0
        )
        for text, words in (
            ("9696/sctp", "invalid protocol 'sctp' in --remove '9696/sctp'"),
            ("70000", "invalid port 70000 in --remove '70000'"),
            ("9696/", "invalid protocol '' in --remove '9696/'"),
            ("9696/udp", "no kernel forward matches '9696/udp'"),
        ):
            r = pk("forward", "--remove", text, "--netns", router)
            assert r.returncode == 2 and r.stderr.count("\n") == 1 and words in r.stderr, r.stderr
        r = pk("forward", "--remove", "9696/TCP", "--netns", router, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["changed"] == [f"0.0.0.0:9696:{h.address('inside')}:2988/tcp"]
    finally:
        pk("forward", "--remove-all", "--netns", router)
        state = f"/run/portkit/forward/{router}.json"
        if os.path.exists(state):
            os.unlink(state)
