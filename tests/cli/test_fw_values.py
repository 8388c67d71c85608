"""``fw allow`` builds its rule from the values given, never by splicing them into YAML text,
and an undetermined ``fw check`` is exit 5 through the CLI's one error mapping."""

from __future__ import annotations

import json
import pathlib

import pytest

from portkit.cli.main import main
from portkit.errors import InputError
from portkit.model.firewall import PortRange
from portkit.parse.policy_yaml import rule_from_values


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("port", ["&x 80", "!!str 80", "80, 90", "[80]", "{a: 1}", "", " ", "80 # c", "*x"])
def test_yaml_syntax_and_blank_ports_are_refused(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], port: str) -> None:
    pol = tmp_path / "policy.yaml"
    code, _, err = run(capsys, "fw", "allow", port, "--policy", str(pol))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and repr(port) in err
    assert not pol.exists()  # nothing was written


@pytest.mark.parametrize(
    ("port", "proto", "ports"),
    [("80", "any", [{"lo": 80, "hi": 80}]), ("22/tcp", "tcp", [{"lo": 22, "hi": 22}]),
     ("8000-8100/udp", "udp", [{"lo": 8000, "hi": 8100}]), ("icmp", "icmp", [])],
)  # fmt: skip
def test_normal_ports_work(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], port: str, proto: str, ports: list[object]) -> None:
    pol = str(tmp_path / "policy.yaml")
    assert run(capsys, "fw", "allow", port, "--policy", pol)[0] == 0
    code, out, _ = run(capsys, "fw", "list", "--policy", pol, "--json")
    rule = json.loads(out)["rules"][0]
    assert code == 0 and rule["proto"] == proto and rule["ports"] == ports


def test_no_port_still_means_any(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    pol = str(tmp_path / "policy.yaml")
    assert run(capsys, "fw", "allow", "--from", "10.0.0.0/8", "--policy", pol)[0] == 0
    rule = json.loads(run(capsys, "fw", "list", "--policy", pol, "--json")[1])["rules"][0]
    assert rule["proto"] == "any" and rule["ports"] == [] and rule["sources"] == ["10.0.0.0/8"]


def test_rule_from_values_checks_like_the_file() -> None:
    r = rule_from_values(action="deny", proto="udp", ports=["53", "5353"], sources=["10.0.0.1"], interface="eth0", log=True, comment="#: a comment")
    assert r.ports == (PortRange(53, 53), PortRange(5353, 5353)) and r.sources == ("10.0.0.1/32",)
    assert r.comment == "#: a comment" and r.log and r.interface == "eth0"
    with pytest.raises(InputError, match="icmp has no ports"):
        rule_from_values(action="allow", proto="icmp", ports=["22"])
    with pytest.raises(InputError, match="bad interface name"):
        rule_from_values(action="allow", interface="eth0\ndrop")
    with pytest.raises(InputError, match="IPv6 but icmp is IPv4 only"):
        rule_from_values(action="allow", proto="icmp", sources=["2001:db8::1"])


def test_undetermined_check_exits_5_with_one_line(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text("default: {in: deny, out: allow}\nrules:\n  - {action: allow, interface: wg0}\n")
    code, out, err = run(capsys, "fw", "check", "--policy", str(pol), "--proto", "tcp", "--src", "192.0.2.1", "--dst", "10.0.0.1", "--dport", "99")
    assert code == 5 and "UNKNOWN" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("portkit: no verdict for this packet: ") and "wg0" in lines[0]
