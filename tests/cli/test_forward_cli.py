"""`portkit forward` / `portkit nat` command lines: bad input is one line and exit 2, nothing half-started."""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys

import pytest

from portkit.drivers.forwarder import Forwarder
from portkit.engine.forwardspec import parse_spec
from portkit.errors import InputError, ResolveError
from tests.conftest import CliResult, run_cli

PY = sys.executable


def pk(*args: str, timeout: float = 20) -> CliResult:
    return run_cli(*args, timeout=timeout)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("8080:", "missing target port in '8080:'"),
        ("99999:1", "listen port 99999 in '99999:1' is out of range; valid ports are 1-65535"),
        ("a:b:c", "invalid listen port 'a' in 'a:b:c'"),
    ],
)
def test_bad_spec_one_line_exit_2(spec: str, words: str) -> None:
    r = pk("forward", spec)
    assert r.code == 2
    assert r.stderr.count("\n") == 1 and words in r.stderr and "Traceback" not in r.stderr


def test_listen_port_in_use_names_the_holder_and_exits_2() -> None:
    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        other = s.getsockname()[1]
    try:
        r = pk("forward", f"{other}:1", f"{port}:1")
        assert r.code == 2
        line = r.stderr.strip().splitlines()[-1]
        assert f"cannot listen on 127.0.0.1:{port}/tcp: address already in use" in line
        assert f"pid {os.getpid()}" in line and f"portkit who {port}" in line
        assert "forwarding" not in r.stderr  # nothing was served
    finally:
        holder.close()


def test_start_is_all_or_nothing_in_process() -> None:
    holder = socket.create_server(("127.0.0.1", 0))
    busy = holder.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        first = s.getsockname()[1]
    fwd = Forwarder([parse_spec(f"{first}:1"), parse_spec(f"{busy}:1")])
    with pytest.raises(InputError, match="address already in use"):
        fwd.start()
    socket.create_server(("127.0.0.1", first)).close()  # the first listener was closed again
    holder.close()

    def resolver(host: str, port: int, kind: int) -> list[tuple[int, tuple[str, int]]]:
        if host == "127.0.0.1":
            return [(socket.AF_INET, (host, port))]
        raise ResolveError(host, "Name or service not known")

    fwd = Forwarder([parse_spec(f"{first}:1"), parse_spec(f"{busy}:nowhere.test:1")], resolver=resolver)  # type: ignore[arg-type]
    with pytest.raises(ResolveError, match=r"cannot resolve host name 'nowhere\.test'"):
        fwd.start()
    socket.create_server(("127.0.0.1", first)).close()


@pytest.mark.root
def test_unresolvable_target_exit_2_in_a_namespace_with_its_own_resolver() -> None:
    """No real DNS: the namespace's resolv.conf points at its own 127.0.0.1, where nothing listens."""
    ns = f"pk-fwd-dev-{secrets.token_hex(3)}"
    etc = f"/etc/netns/{ns}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        os.makedirs(etc)
        with open(f"{etc}/resolv.conf", "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        with open(f"{etc}/hosts", "w") as f:
            f.write("127.0.0.1 localhost\n")
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        r = subprocess.run(
            ["ip", "netns", "exec", ns, PY, "-m", "portkit", "forward", "8080:nosuchhost.example:80"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 2, r.stderr
        assert "cannot resolve host name 'nosuchhost.example'" in r.stderr
        assert r.stderr.count("\n") == 1
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(etc, ignore_errors=True)


def test_check_and_exposure_warning(tmp_path: pytest.TempPathFactory) -> None:
    r = pk("forward", "--check", "0.0.0.0:8080:127.0.0.1:2988", "[::1]:53:[::1]:5353/udp")
    assert r.code == 0
    assert r.stdout.splitlines() == ["0.0.0.0:8080:127.0.0.1:2988/tcp", "[::1]:53:[::1]:5353/udp"]
    assert "portkit: warning: 0.0.0.0:8080/tcp listens beyond loopback with no --allow" in r.stderr
    r = pk("forward", "--check", "--allow", "10.0.0.0/8", "0.0.0.0:8080:127.0.0.1:2988")
    assert r.code == 0 and "warning" not in r.stderr
    cfg = tmp_path / "bad.yaml"  # type: ignore[operator]
    cfg.write_text("forwards:\n  - '1:2'\n  - spec: '70000:1'\n")
    r = pk("forward", "--check", "--config", str(cfg))
    assert r.code == 2 and f"{cfg}:3: forwards[2]: listen port 70000" in r.stderr


def test_usage_errors() -> None:
    r = pk("forward")
    assert r.code == 2 and "nothing to forward" in r.stderr
    r = pk("forward", "--local", "8080:1")
    assert r.code == 2 and "add --kernel" in r.stderr
    r = pk("nat", "--port", "0", "--source", "tool")
    assert r.code == 2 and "invalid port '0'; valid ports are 1-65535" in r.stderr
    r = pk("forward", "--help")
    assert r.code == 0 and "[BIND:]LISTEN_PORT:TARGET_HOST:TARGET_PORT" in r.stdout


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
    assert r.code == 2, r.stderr
    assert r.stderr.count("\n") == 1 and words in r.stderr and "Traceback" not in r.stderr
    assert "forwarding" not in r.stderr


def test_check_json_is_a_document_with_every_forward() -> None:
    r = pk("forward", "--check", "--json", "18090:2988", "0.0.0.0:5353:10.0.0.2:53/udp")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == 1 and doc["action"] == "check"
    first, second = doc["forwards"]
    assert first["spec"] == "127.0.0.1:18090:127.0.0.1:2988/tcp" and first["listen_port"] == 18090
    assert second["proto"] == "udp" and second["target"] == "10.0.0.2:53" and second["allow"] == []
    assert doc["options"]["drain"] == 10.0
    assert len(doc["warnings"]) == 1 and "0.0.0.0:5353/udp listens beyond loopback" in doc["warnings"][0]


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
    assert r.code == 2, r.stderr
    assert r.stderr.count("\n") == 1 and words in r.stderr and "Traceback" not in r.stderr


def test_binary_config_file_is_one_line_exit_2(tmp_path: pathlib.Path) -> None:
    blob = tmp_path / "fwd.yaml"
    blob.write_bytes(b"forwards:\n  - '1:2'\n\xd0\xff\xfe")
    r = pk("forward", "--check", "--config", str(blob))
    assert (
        r.code == 2
        and r.stderr == f"portkit: {blob}: not UTF-8 text (byte 0xd0 at offset 20); a forward config is UTF-8 text\n"
    )


def test_signals_while_starting_and_once_serving() -> None:
    """The handlers are in place before the "forwarding" line (a supervisor may signal right
    after it), yet Ctrl-C during a slow start still stops at once."""
    import signal

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def slow_resolver(host: str, port: int, kind: int) -> list[tuple[int, tuple[str, int]]]:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the target is being resolved
        return [(socket.AF_INET, ("127.0.0.1", port))]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        starting = Forwarder([parse_spec(f"{port}:slow.test:1")], resolver=slow_resolver)  # type: ignore[arg-type]
        starting.install_signal_handlers()
        with pytest.raises(KeyboardInterrupt):
            starting.start()
        serving = Forwarder([parse_spec(f"{port}:127.0.0.1:1")])
        serving.install_signal_handlers()
        serving.start()
        os.kill(os.getpid(), signal.SIGTERM)  # the default action would end pytest itself
        serving.run()  # returns: the SIGTERM drained and stopped it
        assert not serving.interrupted
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
