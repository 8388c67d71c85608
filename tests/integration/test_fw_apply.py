"""fw apply/confirm/rollback/reset/status/show/check on the real kernel, inside lab namespaces."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from portkit.engine.nftcompile import CompiledPolicy
from portkit.errors import InputError, SystemRefused
from portkit.ops import firewall as fw
from tests.conftest import needs_tool, rollback_timers, wait_until
from tests.conftest import run_cli as cli

pytestmark = [pytest.mark.root, needs_tool("nft")]

SCENARIO: dict[str, Any] = {
    "name": "fwapply",
    "hosts": {"client": {}, "server": {}},
    "links": [{"name": "lan", "ends": {"client": ["10.78.0.2/24"], "server": ["10.78.0.1/24"]}}],
}
POLICY_A = "default: {in: deny, out: allow}\nrules:\n  - {action: allow, proto: tcp, port: 22, from: 10.78.0.0/24}\n"
POLICY_B = "default: {in: deny, out: allow}\nrules:\n  - {action: allow, proto: tcp, port: 8080}\n"


@pytest.fixture
def server(lab: Any, tmp_path: pathlib.Path) -> Iterator[tuple[Any, str, pathlib.Path]]:
    h = lab(SCENARIO)
    ns = h.netns("server")
    pol = tmp_path / "policy.yaml"
    pol.write_text(POLICY_A)
    pol.chmod(0o600)
    try:
        yield h, ns, pol
    finally:
        fw.forget_state(netns=ns)


def table(ns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout


def test_apply_check_show_status_reset(server: tuple[Any, str, pathlib.Path]) -> None:
    h, ns, pol = server
    h.nft("server", "table inet other {\n chain c {\n type filter hook input priority 10; policy accept;\n }\n}\n")
    h.nft("server", "table inet portkit_forward {\n chain prerouting {\n type nat hook prerouting priority dstnat; policy accept;\n }\n}\n")
    r = cli("fw", "apply", "--policy", str(pol), "--netns", ns, "--force")
    assert r.code == 0, r.stderr
    assert "table inet portkit" in table(ns)
    st = json.loads(cli("fw", "status", "--policy", str(pol), "--netns", ns, "--json").stdout)
    assert st["active"] and st["in_sync"] is True and not st["pending_rollback"]
    ok = cli("fw", "check", "--netns", ns, "--src", "10.78.0.2", "--dst", "10.78.0.1", "--dport", "22", "--json")
    doc = json.loads(ok.stdout)
    assert ok.code == 0 and doc["verdict"] == "accept" and doc["decided_by"]["table"] == "inet portkit"
    no = cli("fw", "check", "--netns", ns, "--src", "10.78.0.2", "--dst", "10.78.0.1", "--dport", "23", "--json")
    assert no.code == 1 and json.loads(no.stdout)["decided_by"]["rule"] == "policy drop"
    assert h.probe("client", "10.78.0.1", 23, timeout=0.3).state == "timeout"
    show = cli("fw", "show", "--netns", ns)
    assert show.code == 0 and "inet portkit input" in show.stdout and "inet other c" in show.stdout
    pol.write_text(POLICY_B)
    st = json.loads(cli("fw", "status", "--policy", str(pol), "--netns", ns, "--json").stdout)
    assert st["in_sync"] is False
    assert cli("fw", "reset", "--netns", ns).code == 0
    after = table(ns)
    assert "table inet portkit {" not in after and "table inet other" in after and "table inet portkit_forward {" in after
    assert cli("fw", "reset", "--netns", ns).code == 1
    assert "table inet portkit_forward {" in table(ns)


def test_confirm_window_rolls_back_by_itself(server: tuple[Any, str, pathlib.Path]) -> None:
    _h, ns, pol = server
    assert cli("fw", "apply", "--policy", str(pol), "--netns", ns, "--force").code == 0
    pol.write_text(POLICY_B)
    r = cli("fw", "apply", "--policy", str(pol), "--netns", ns, "--force", "--confirm", "1.5")
    assert r.code == 0 and "fw confirm" in r.stdout
    assert "dport 8080" in table(ns)
    assert json.loads(cli("fw", "status", "--policy", str(pol), "--netns", ns, "--json").stdout)["pending_rollback"]
    wait_until(lambda: "dport 8080" not in table(ns), timeout=10)
    text = table(ns)
    assert "dport 8080" not in text and "tcp dport 22 accept" in text  # policy A is back
    st = json.loads(cli("fw", "status", "--policy", str(pol), "--netns", ns, "--json").stdout)
    assert not st["pending_rollback"] and st["last_rollback"] == "rolled back"
    assert st["in_sync"] is False  # the kernel has policy A again, the file says B
    assert cli("fw", "confirm", "--netns", ns).code == 1  # too late: nothing pending


def test_confirm_keeps_the_rules(server: tuple[Any, str, pathlib.Path]) -> None:
    _h, ns, pol = server
    before = rollback_timers()
    assert cli("fw", "apply", "--policy", str(pol), "--netns", ns, "--force", "--confirm", "2").code == 0
    ours = rollback_timers() - before
    assert ours
    assert cli("fw", "confirm", "--netns", ns).code == 0
    wait_until(lambda: not ours & rollback_timers(), timeout=20)  # the timer is gone: nothing can fire
    assert "tcp dport 22 accept" in table(ns)


def test_kernel_refusal_keeps_the_old_rules(server: tuple[Any, str, pathlib.Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _h, ns, pol = server
    fw.apply_policy(str(pol), netns=ns, force=True)
    before = table(ns)
    monkeypatch.setattr("portkit.engine.nftcompile.compile_ruleset", lambda *a, **k: CompiledPolicy("table inet portkit\ndelete table inet portkit\ntable inet portkit { chain c { bogus } }\n", 1))
    with pytest.raises(SystemRefused, match="nft refused"):
        fw.apply_policy(str(pol), netns=ns, force=True)
    assert table(ns) == before


def test_ssh_session_is_not_locked_out(server: tuple[Any, str, pathlib.Path]) -> None:
    _h, ns, pol = server
    pol.write_text(POLICY_B)
    with pytest.raises(InputError, match="would be locked out"):
        fw.apply_policy(str(pol), netns=ns, ssh_connection="10.78.0.2 50000 10.78.0.1 22")
    assert "inet portkit" not in table(ns)
    pol.write_text(POLICY_A)
    fw.apply_policy(str(pol), netns=ns, ssh_connection="10.78.0.2 50000 10.78.0.1 22")
    pol.write_text(POLICY_B)
    fw.apply_policy(str(pol), netns=ns, ssh_connection="10.78.0.2 50000 10.78.0.1 22", force=True)
    assert "dport 8080" in table(ns)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_without_cap_net_admin_the_error_is_clear() -> None:
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="pk-fw-"))
    tmp_path.chmod(0o755)
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY_A)
    pol.chmod(0o644)
    r = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all", sys.executable, "-m", "portkit", "fw", "apply", "--policy", str(pol), "--force"],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "PORTKIT_RUN_DIR": str(tmp_path)},
    )  # fmt: skip
    assert r.returncode == 3, r.stderr
    assert "CAP_NET_ADMIN" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "rollback").mkdir(mode=0o700)  # as root leaves /run/portkit/rollback
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all", sys.executable, "-m", "portkit", "fw"]
    for args in (
        ["show"], ["check", "--src", "192.0.2.1", "--dst", "10.0.0.1", "--dport", "22"],
        ["confirm", "--netns", "pk-fw-no-such-ns"], ["reset", "--netns", "pk-fw-no-such-ns"],
    ):  # fmt: skip
        r = subprocess.run([*nobody, *args], capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "PORTKIT_RUN_DIR": str(tmp_path)})
        assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    shutil.rmtree(tmp_path)


def test_binding_and_binary_read_the_same_ruleset(server: tuple[Any, str, pathlib.Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from portkit.backends import nft

    h, ns, _pol = server
    h.nft("server", (pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "nft" / "priorities.nft").read_text())
    if nft._binding() is None:
        pytest.skip("libnftables' Python binding (python3-nftables) is not installed")
    via_binding = nft.list_ruleset_json(netns=ns)
    monkeypatch.setenv("PORTKIT_NFT_BINDING", "0")
    via_binary = nft.list_ruleset_json(netns=ns)
    assert via_binding == via_binary and len(via_binary["nftables"]) > 10


def test_apply_while_a_rollback_is_pending_says_so(server: tuple[Any, str, pathlib.Path]) -> None:
    _h, ns, pol = server
    assert cli("fw", "apply", "--policy", str(pol), "--netns", ns, "--force", "--confirm", "30").code == 0
    pol.write_text(POLICY_B)
    r = cli("fw", "apply", "--policy", str(pol), "--netns", ns, "--force", "--json")
    doc = json.loads(r.stdout)
    assert r.code == 0 and doc["confirm_deadline"] is not None  # the earlier timer still rolls back
    assert "fw confirm" in cli("fw", "apply", "--policy", str(pol), "--netns", ns, "--force").stdout
    assert cli("fw", "confirm", "--netns", ns).code == 0
    assert json.loads(cli("fw", "apply", "--policy", str(pol), "--netns", ns, "--force", "--json").stdout)["confirm_deadline"] is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("rules:\n  - {action: allow, port: 22, colour: red}\n", "p.yaml:2: unknown key 'colour'"),
        ("rules:\n  - {action: allow, port: 70000}\n", "p.yaml:2: bad port 70000"),
        ("rules:\n  - {action: allow, from: 10.0.0.0/33}\n", "p.yaml:2: bad address or CIDR '10.0.0.0/33'"),
        ("rules:\n  - {action: allow, proto: icmp, port: 22}\n", "p.yaml:2: impossible rule 1: icmp has no ports"),
        ("rules:\n  - {action: allow, proto: tcp, port: 22, family: ipv4, from: '2001:db8::/32'}\n", "p.yaml:2: impossible rule 1: 2001:db8::/32 is IPv6"),
    ],
)
def test_a_bad_policy_applies_nothing(server: tuple[Any, str, pathlib.Path], text: str, words: str) -> None:
    _h, ns, pol = server
    fw.apply_policy(str(pol), netns=ns, force=True)
    before = table(ns)
    bad = pol.with_name("p.yaml")
    bad.write_text(text)
    bad.chmod(0o600)
    r = cli("fw", "apply", "--policy", str(bad), "--netns", ns, "--force", "--confirm", "5")
    assert r.code == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert table(ns) == before
    assert not json.loads(cli("fw", "status", "--policy", str(pol), "--netns", ns, "--json").stdout)["pending_rollback"]


def test_without_nft_nothing_changes_and_the_error_says_why(server: tuple[Any, str, pathlib.Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _h, ns, pol = server
    fw.apply_policy(str(pol), netns=ns, force=True)
    before = table(ns)
    pol.write_text(POLICY_B)
    monkeypatch.setattr("portkit.backends.host.find_tool", lambda _name: None)
    with pytest.raises(SystemRefused, match="nft command is not installed"):
        fw.apply_policy(str(pol), netns=ns, force=True, confirm=5)
    monkeypatch.undo()
    assert table(ns) == before
    assert not fw.firewall_status(str(pol), netns=ns).pending_rollback


def test_rule_counts_come_from_the_compiler_and_the_kernel(server: tuple[Any, str, pathlib.Path]) -> None:
    _h, ns, pol = server
    pol.write_text(POLICY_A + "  - {action: reject, port: 25}\n  - {direction: out, action: deny, to: [10.9.0.0/16, 2001:db8::/32]}\n")
    result = fw.apply_policy(str(pol), netns=ns, force=True)
    listed = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "portkit"], capture_output=True, text=True, check=True).stdout
    by_text = sum(1 for ln in listed.splitlines() if ln.startswith("\t\t") and not ln.strip().startswith("type "))
    assert result.rules == by_text == fw.firewall_status(str(pol), netns=ns).rules
