"""``portkit fw``: editing a policy file, checking a packet against it, compiling, errors."""

from __future__ import annotations

import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest

from portkit.cli.main import main
from portkit.errors import InputError


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # refused by the argument parser (one line, exit 2)
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_edit_list_delete(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    pol = str(tmp_path / "sub" / "policy.yaml")
    assert run(capsys, "fw", "allow", "22/tcp", "--from", "10.0.0.0/8", "--policy", pol)[0] == 0
    assert run(capsys, "fw", "reject", "53", "--out", "--to", "2001:db8::/32", "--policy", pol, "--comment", "no dns")[0] == 0
    assert run(capsys, "fw", "insert", "1", "deny", "ssh", "--from", "10.9.0.0/16", "--policy", pol)[0] == 0
    assert run(capsys, "fw", "allow", "22/tcp", "--from", "10.1.0.0/16", "--policy", pol)[0] == 0
    code, out, _ = run(capsys, "fw", "list", "--policy", pol, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["schema"] == 1
    assert [(r["action"], r["direction"], r["proto"]) for r in doc["rules"]] == [
        ("deny", "in", "any"), ("allow", "in", "tcp"), ("reject", "out", "any"), ("allow", "in", "tcp"),
    ]  # fmt: skip
    assert doc["rules"][0]["port_text"] == ["ssh"] and doc["rules"][0]["ports"] == [{"lo": 22, "hi": 22}]
    assert [w["rule"] for w in doc["warnings"]] == [4]
    code, out, _ = run(capsys, "fw", "list", "--policy", pol)
    assert "is redundant" in out and "1  in   deny" in out
    assert run(capsys, "fw", "delete", "4", "--policy", pol)[0] == 0
    code, _, err = run(capsys, "fw", "delete", "9", "--policy", pol)
    assert code == 2 and "no rule number 9; valid: 1-3" in err
    assert len(json.loads(run(capsys, "fw", "list", "--policy", pol, "--json")[1])["rules"]) == 3


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("fw", "allow", "70000"), "ports are 1-65535"),
        (("fw", "allow", "22/sctp"), "bad protocol 'sctp'"),
        (("fw", "allow", "icmp", "--from", "2001:db8::1"), "IPv6 but icmp is IPv4 only"),
        (("fw", "allow", "22", "--from", "10.0.0.256"), "bad address or CIDR"),
        (("fw", "insert", "0", "allow", "22"), "invalid rule number '0': must be 1-100000"),
    ],
)
def test_bad_rules_exit_2_and_write_nothing(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], words: str) -> None:
    pol = tmp_path / "p.yaml"
    code, _, err = run(capsys, *args, "--policy", str(pol))
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not pol.exists()


def test_malformed_policy_file_names_file_and_line(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text("rules:\n  - action: allow\n    prot: tcp\n")
    code, _, err = run(capsys, "fw", "compile", "--policy", str(pol))
    assert code == 2 and f"{pol}:3: unknown key 'prot'" in err


def test_check_against_a_policy(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text("default: {in: deny, out: allow}\nrules:\n  - {action: allow, proto: tcp, port: 22, from: 10.0.0.0/8}\n  - {action: reject, proto: tcp, port: 23}\n  - {action: allow, interface: wg0}\n")
    base = ("fw", "check", "--policy", str(pol), "--proto", "tcp", "--dst", "10.0.0.1")
    code, out, _ = run(capsys, *base, "--src", "10.2.3.4", "--dport", "22", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["verdict"] == "accept" and doc["hook"] == "in" and doc["schema"] == 1
    assert doc["decided_by"] == {"table": "policy", "chain": "in", "handle": 1, "rule": "allow in tcp 22 from 10.0.0.0/8"}
    assert doc["translated_destination"] is None and isinstance(doc["trace"], list)
    assert set(doc) >= {"verdict", "hook", "decided_by", "trace", "translated_destination"}
    assert run(capsys, *base, "--src", "192.0.2.1", "--dport", "22", "--iif", "eth0")[0] == 1
    code, out, _ = run(capsys, *base, "--src", "192.0.2.1", "--dport", "23", "--json")
    assert code == 1 and json.loads(out)["verdict"] == "reject"
    code, out, _ = run(capsys, *base, "--src", "192.0.2.1", "--dport", "99")
    assert code == 5 and "UNKNOWN" in out and "wg0" in out
    assert run(capsys, *base, "--src", "192.0.2.1", "--dport", "99", "--iif", "wg0")[0] == 0
    assert run(capsys, "fw", "check", "--out", "--policy", str(pol), "--src", "10.0.0.1", "--dst", "192.0.2.1", "--dport", "443")[0] == 0


def test_check_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    pol = str(tmp_path / "none.yaml")
    code, _, err = run(capsys, "fw", "check", "--policy", pol, "--src", "10.0.0.1", "--dst", "::1", "--dport", "1")
    assert code == 2 and "different IP versions" in err
    code, _, err = run(capsys, "fw", "check", "--policy", pol, "--src", "10.0.0.x", "--dst", "10.0.0.1", "--dport", "1")
    assert code == 2 and "bad source address '10.0.0.x'" in err
    code, _, err = run(capsys, "fw", "check", "--policy", pol, "--src", "10.0.0.1", "--dst", "10.0.0.2")
    assert code == 2 and "--dport is needed" in err


def test_compile_prints_the_script(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    code, out, _ = run(capsys, "fw", "compile", "--policy", str(empty))
    assert code == 0 and "table inet portkit {" in out and "policy drop;" in out
    code, out, _ = run(capsys, "fw", "compile", "--policy", str(empty), "--json")
    assert json.loads(out)["script"].count("chain ") == 2
    # a policy named explicitly must exist: a typo never compiles (or applies) the defaults
    code, out, err = run(capsys, "fw", "compile", "--policy", str(tmp_path / "missing.yaml"))
    assert code == 2 and out == "" and "missing.yaml: no such policy file" in err


def test_apply_refuses_a_loose_policy_file(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text("rules: []\n")
    os.chmod(pol, 0o666)
    code, _, err = run(capsys, "fw", "apply", "--policy", str(pol), "--netns", "pk-fw-no-such-ns")
    assert code == 2 and f"refusing policy file {pol}: mode 0666" in err


def test_unit_file_matches_contrib() -> None:
    from portkit.ops.firewall import unit_text

    text = unit_text("/srv/p.yaml", python="/opt/pk/bin/python")
    assert "ExecStart=/opt/pk/bin/python -m portkit fw apply --force --policy /srv/p.yaml" in text
    assert "ExecStop=-/opt/pk/bin/python -m portkit fw reset" in text  # nothing loaded is no failure
    assert "/usr/bin/env" not in text.split("[Service]")[1]
    from portkit.ops.firewall_apply import UNIT_TEMPLATE

    contrib = pathlib.Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "portkit-firewall.service"
    assert contrib.read_text() == UNIT_TEMPLATE


def test_enable_disable_with_a_unit_dir(tmp_path: pathlib.Path) -> None:
    from portkit.ops.firewall import disable_boot, enable_boot

    pol = tmp_path / "p.yaml"
    pol.write_text("rules: []\n")
    pol.chmod(0o600)
    unit = enable_boot(str(pol), unit_dir=str(tmp_path / "units"), systemctl=False)
    assert pathlib.Path(unit).read_text().count(str(pol)) == 1
    assert disable_boot(unit_dir=str(tmp_path / "units"), systemctl=False)
    assert not disable_boot(unit_dir=str(tmp_path / "units"), systemctl=False)


def test_fw_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fw", "--help"])
    out = capsys.readouterr().out
    assert "fw check --in" in out and "--confirm" in out


@pytest.mark.parametrize("action", ["allow", "deny", "reject", "insert", "delete", "list", "check", "apply", "show", "reset", "enable"])
def test_every_fw_action_help_has_examples(capsys: pytest.CaptureFixture[str], action: str) -> None:
    with pytest.raises(SystemExit):
        main(["fw", action, "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and f"portkit fw {action if action != 'delete' else 'list'}" in out


def test_a_policy_file_that_is_not_text_is_bad_input(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_bytes(b"\xff\xfe rules: []\n")
    for args in (("fw", "compile"), ("fw", "list"), ("fw", "check", "--src", "192.0.2.1", "--dst", "10.0.0.1", "--dport", "22")):
        code, _, err = run(capsys, *args, "--policy", str(pol))
        assert code == 2 and f"{pol}: not UTF-8 text" in err and len(err.strip().splitlines()) == 1


# Without root, fw show and fw reset meet the privilege check first (exit 3); that is fine.
@pytest.mark.parametrize("args", [("fw", "apply"), ("fw", "status"), pytest.param(("fw", "reset"), marks=pytest.mark.root), pytest.param(("fw", "show"), marks=pytest.mark.root), ("fw", "check", "--src", "192.0.2.1", "--dst", "10.0.0.1", "--dport", "22")])
def test_a_missing_namespace_is_bad_input(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text("rules: []\n")
    pol.chmod(0o600)
    policy = () if args[1] == "check" else ("--policy", str(pol))  # a check against a policy needs no namespace
    code, out, err = run(capsys, *args, *policy, "--netns", "pk-fw-no-such-ns-7f3a")
    assert code == 2 and "no network namespace named 'pk-fw-no-such-ns-7f3a'" in err and not out


def test_concurrent_edits_lose_no_rule(tmp_path: pathlib.Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from portkit.ops.firewall import edit_policy, list_policy

    pol = str(tmp_path / "p.yaml")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda port: edit_policy(pol, op="append", action="allow", port=str(port)), range(2000, 2024)))
    assert sorted(r.ports[0].lo for r in list_policy(pol).rules) == list(range(2000, 2024))


def test_unit_text_quotes_and_escapes_for_systemd() -> None:
    from portkit.ops.firewall_apply import systemd_quote, unit_text

    text = unit_text('/srv/my policy $HOME %h "x"\\.yaml', python="/opt/pk/bin/python")
    line = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    assert line == 'ExecStart=/opt/pk/bin/python -m portkit fw apply --force --policy "/srv/my policy $$HOME %%h \\"x\\"\\\\.yaml"'
    assert systemd_quote("/usr/bin/python3") == "/usr/bin/python3"
    with pytest.raises(InputError):
        unit_text("/srv/p.yaml\nExecStartPre=/bin/sh -c evil", python="/opt/pk/bin/python")


def test_fw_enable_refuses_a_path_with_a_newline_and_writes_no_unit(tmp_path: pathlib.Path) -> None:
    from portkit.ops.firewall_apply import enable_boot

    pol = tmp_path / "p\nExecStartPre=-touch pk-pwned\n#.yaml"
    pol.write_text("inbound: []\n")
    units = tmp_path / "units"
    with pytest.raises(InputError) as exc:
        enable_boot(str(pol), unit_dir=str(units), systemctl=False)
    assert "control character" in str(exc.value)
    assert not units.exists()


def test_fw_enable_and_disable_both_refuse_netns(tmp_path: pathlib.Path) -> None:
    from portkit.ops.firewall_apply import UNIT_NAME, disable_boot, enable_boot

    units = tmp_path / "units"
    units.mkdir()
    (units / UNIT_NAME).write_text("[Unit]\n")
    pol = tmp_path / "p.yaml"
    pol.write_text("inbound: []\n")
    for call in (
        lambda: enable_boot(str(pol), unit_dir=str(units), systemctl=False, netns="pk-x"),
        lambda: disable_boot(unit_dir=str(units), systemctl=False, netns="pk-x"),
    ):
        with pytest.raises(InputError, match="no --netns"):
            call()
    assert (units / UNIT_NAME).read_text() == "[Unit]\n"


@pytest.mark.parametrize("verb", ["enable", "disable"])
def test_cli_fw_enable_disable_netns_is_bad_input(verb: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "portkit", "fw", verb, "--netns", "pk-none"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "no --netns" in proc.stderr


def test_ssh_lockout_fails_closed_on_a_malformed_ssh_connection() -> None:
    from portkit.model.firewall import Policy
    from portkit.ops.firewall_apply import ssh_lockout

    pol = Policy()
    for bad in ("garbage", "1.2.3.4 5 6.7.8.9", "1.2.3.4 x 127.0.0.1 22", "1.2.3.4 5 127.0.0.1 ٢٢", "a b c d",
                "127.0.0.1 5 127.0.0.1 99999", "127.0.0.1 5 127.0.0.1 0"):  # fmt: skip
        reason = ssh_lockout(pol, bad)
        assert reason is not None and "malformed" in reason, bad
    assert ssh_lockout(pol, None) is None and ssh_lockout(pol, "") is None


def test_fw_allow_makes_the_policy_directories_0755_whatever_the_umask(tmp_path: pathlib.Path) -> None:
    policy = tmp_path / "etc" / "portkit" / "policy.yaml"
    r = subprocess.run(
        [sys.executable, "-m", "portkit", "fw", "allow", "22/tcp", "--policy", str(policy)],
        capture_output=True, text=True, timeout=60, check=False, preexec_fn=lambda: os.umask(0),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    modes = [stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "etc", policy.parent, policy)]
    assert modes == [0o755, 0o755, 0o644]
