"""Issue 12, items 7-9: every malformed value a user can type is one line on stderr and exit
status 2 - never a traceback, never "internal error", never a hang, and nothing written."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

PY = sys.executable
HUGE_PORT = "1" * 5000  # more digits than int() takes (4300)


def pk(*args: str, cwd: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PORTKIT_DEBUG"}
    env.pop("SSH_CONNECTION", None)
    return subprocess.run(
        [PY, "-m", "portkit", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def assert_refused(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert len(lines[0]) < 400, lines[0]
    for w in words:
        assert w in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        # item 7: ValueError / int limit / EINVAL
        (("who", "²"), ("'²'", "1-65535")),
        (("check", "127.0.0.1:²"), ("'²'", "1 to 65535")),
        (("check", f"127.0.0.1:{HUGE_PORT}"), ("5000 characters",)),
        (("who", HUGE_PORT), ("5000 characters",)),
        (("scan", "127.0.0.1", "-p", HUGE_PORT), ("5000 characters",)),
        (("info", HUGE_PORT), ("0-65535",)),
        (("trace", "[fe80::1]:22"), ("link-local", "fe80::1%eth0")),
        (("why", "[fe80::1]:22"), ("link-local",)),
        (("check", "[fe80::1]:22"), ("link-local",)),
        # item 8: accepted before
        (("check", "127.0.0.1:٨٠"), ("ASCII digits",)),
        (("check", "127.0.0.1:８０"), ("ASCII digits",)),
        (("who", "٨٠/tcp"), ("ASCII digits",)),
        (("ls", "--port", "٨٠"), ("'٨٠'",)),
        (("info", "٨٠"), ("'٨٠'",)),
        (("free", "--range", "²-³"), ("'²'",)),
        (("free", "--count", "٣"), ("'٣'", "1-1000")),
        (("scan", "1.2.3", "-p", "22"), ("'1.2.3'", "not a valid IPv4 address")),
        (("scan", "0x7f.1", "-p", "22"), ("'0x7f.1'",)),
        (("check", "0x7f.1:22"), ("'0x7f.1'",)),
        (("check", "2130706433:22"), ("'2130706433'",)),
        (("scan", "127.0.0.1", "--rate", "nan"), ("--rate", "'nan'")),
        (("scan", "127.0.0.1", "--rate", "-1"), ("--rate", "'-1'")),
        (("scan", "127.0.0.1", "--rate", "-inf"), ("--rate", "'-inf'")),
        (("scan", "127.0.0.1", "--timeout", "inf"), ("--timeout",)),
        (("scan", "127.0.0.1", "--top", "٣"), ("--top",)),
        (("scan", "127.0.0.1", "--max-retries", "-1"), ("--max-retries",)),
        (("check", "127.0.0.1:22", "--timeout", "nan"), ("--timeout",)),
        (("check", "127.0.0.1:22", "--retries", "1e3"), ("--retries",)),
        (("why", "127.0.0.1:22", "--timeout", "nan"), ("--timeout",)),
        (("trace", "127.0.0.1:22", "--max-ttl", "٣"), ("--max-ttl",)),
        (("trace", "127.0.0.1:22", "--tries", "-1"), ("--tries",)),
        (("nat", "--interval", "nan"), ("--interval",)),
        (("ls", "--pid", "-1"), ("--pid",)),
        (("ls", "--netns-pid", "nan"), ("--netns-pid",)),
        (("who", "22", "--kill", "--timeout", "nan"), ("--timeout",)),
        (("who", "22", "--kill", "--signal", ""), ("--signal", "''")),
        (("who", "22", "--kill", "--signal", "٩"), ("--signal",)),
        (("fw", "check", "--src", "10.0.0.1", "--dst", "10.0.0.2", "--dport", "22", "--iif", "eth0;drop"), ("'eth0;drop'",)),
        (("fw", "check", "--src", "10.0.0.1", "--dst", "10.0.0.2", "--dport", "22", "--oif", "x" * 16), ("--oif",)),
        (("fw", "check", "--src", "10.0.0.1", "--dst", "10.0.0.2", "--proto", "icmp", "--dport", "22", "--policy", "/dev/null"), ("icmp has no ports",)),
        (("fw", "check", "--src", "10.0.0.1", "--dst", "10.0.0.2", "--dport", "-1"), ("--dport", "0-65535")),
        (("fw", "insert", "-1", "allow", "22"), ("rule number",)),
        (("fw", "delete", "nan"), ("rule number",)),
        (("forward", "--check", "--connect-timeout", "nan", "8080:80"), ("--connect-timeout",)),
        (("forward", "--check", "--udp-idle", "nan", "8080:80"), ("--udp-idle",)),
        (("forward", "--check", "--drain", "nan", "8080:80"), ("--drain",)),
        (("forward", "--check", "--stats", "nan", "8080:80"), ("--stats",)),
        (("forward", "--check", "--workers", "٤", "8080:80"), ("--workers",)),
        (("forward", "--check", "--udp-max-sessions", "٤", "8080:80"), ("--udp-max-sessions",)),
        (("forward", "--check", "--bulk-threads", "-1", "8080:80"), ("--bulk-threads",)),
        (("forward", "--check", "--pipe-size", "99999999999999999999", "8080:80"), ("--pipe-size", "4096-2147483648")),
        (("forward", "--check", "--pipe-size", "100", "8080:80"), ("--pipe-size",)),
        (("forward", "--kernel", "--confirm", "nan", "8080:10.0.0.2:80"), ("--confirm",)),
        (("forward", "--kernel", "8080:10.0.0.2:80\n"), ("'8080:10.0.0.2:80\\n'",)),
        (("forward", "--kernel", "٨٠:10.0.0.2:80"), ("'٨٠:10.0.0.2:80'",)),
        (("forward", "--kernel", "8080:1.2.3:80"), ("'1.2.3'",)),
        (("forward", "--check", "8080:[fe80::1]:80"), ("link-local",)),
        (("forward", "--remove", "٨٠"), ("'٨٠'",)),
    ],
)
def test_bad_values_are_one_line_exit_2(args: tuple[str, ...], words: tuple[str, ...]) -> None:
    assert_refused(pk(*args), *words)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "100000", "inf", "-nan"])
def test_fw_apply_confirm_is_refused_before_anything(tmp_path: pathlib.Path, value: str) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text("rules: []\n")
    before = sorted(os.listdir(tmp_path))
    r = pk("fw", "apply", "--policy", str(pol), "--confirm", value, "--netns", "pk-never-there")
    assert_refused(r, "--confirm", "1-86400")
    assert sorted(os.listdir(tmp_path)) == before


def test_apply_policy_checks_confirm_before_reading_or_writing() -> None:
    from portkit.errors import InputError
    from portkit.ops.firewall import apply_policy

    for bad in (float("nan"), 0.0, -1.0, 100000.0):
        # the path does not exist: the timeout is refused first, so nothing else ran
        with pytest.raises(InputError, match="confirmation timeout"):
            apply_policy("/nonexistent-pk-dir/p.yaml", confirm=bad, netns="pk-never-there")


def test_forward_pipe_size_is_checked_by_check(tmp_path: pathlib.Path) -> None:
    from portkit.drivers.forwarder_tcp import pipe_size_refusal

    too_big = 1 << 31
    if pipe_size_refusal(too_big) is None:
        pytest.skip("this kernel grants this process a 2 GiB pipe")
    r = pk("forward", "--check", "--pipe-size", str(too_big), "8080:80")
    assert_refused(r, "pipe")
    ok = pk("forward", "--check", "--pipe-size", "65536", "8080:80")
    assert ok.returncode == 0, ok.stderr


def _bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text",
    ["rules: " + "[" * 5000 + "]" * 5000 + "\n", "rules: &a [*a]\n", _bomb(), "rules:\n  - {action: allow, proto: tcp, port: null}\n"],
)
def test_policy_yaml_limits(tmp_path: pathlib.Path, text: str) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text(text)
    assert_refused(pk("fw", "compile", "--policy", str(pol)), str(pol))


@pytest.mark.parametrize("text", ["forwards: " + "[" * 5000 + "\n", "forwards: &a [*a]\n", _bomb() + "forwards: ['8080:80']\n"])
def test_forward_config_yaml_limits(tmp_path: pathlib.Path, text: str) -> None:
    cfg = tmp_path / "f.yaml"
    cfg.write_text(text)
    assert_refused(pk("forward", "--check", "--config", str(cfg)), "refused YAML")


@pytest.mark.parametrize("text", ["hosts: &a [*a]\n", _bomb(), "hosts: " + "[" * 5000 + "\n"])
def test_lab_yaml_limits(tmp_path: pathlib.Path, text: str) -> None:
    # refused while the file is read, before any namespace could be made
    sc = tmp_path / "pk-bomb.yaml"
    sc.write_text(text)
    r = pk("lab", "up", str(sc))
    assert r.returncode in (2, 3), r.stderr
    if r.returncode == 2:
        assert_refused(r, "refused YAML")
