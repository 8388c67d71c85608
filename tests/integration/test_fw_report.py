"""The host report's inbound column, exposure notes and DNAT-forwarded rows (lab namespace)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from portkit.ops.firewall import apply_policy, forget_state
from tests.conftest import needs_tool

pytestmark = [pytest.mark.root, needs_tool("nft")]

SCENARIO: dict[str, Any] = {
    "name": "fwreport",
    "hosts": {
        "client": {},
        "server": {
            "routes": [{"to": "default", "via": "10.79.0.2"}],
            "services": [
                {"proto": "tcp", "listen": "0.0.0.0:22", "kind": "banner", "banner": "SSH-2.0-test"},
                {"proto": "tcp", "listen": "0.0.0.0:3306", "kind": "banner", "banner": "5.7.0-mysql"},
                {"proto": "tcp", "listen": "127.0.0.1:5432", "kind": "silent"},
            ],
        },
    },
    "links": [{"name": "lan", "ends": {"client": ["10.79.0.2/24"], "server": ["10.79.0.1/24"]}}],
}


def test_report_inbound_column(lab: Any, tmp_path: pathlib.Path) -> None:
    from portkit.ops.inspect import report

    h = lab(SCENARIO)
    ns = h.netns("server")
    before = report(netns=ns)
    assert any(n.code == "exposed-sensitive" and n.port == 3306 for n in before.notes)
    pol = tmp_path / "p.yaml"
    pol.write_text("default: {in: deny, out: allow}\nrules:\n  - {action: allow, proto: tcp, port: 22}\n")
    pol.chmod(0o600)
    apply_policy(str(pol), netns=ns, force=True)
    h.nft("server", "table ip pub {\n chain pre {\n type nat hook prerouting priority dstnat; policy accept;\n tcp dport 8080 dnat to 10.79.0.2:80\n }\n}\n")
    table = report(netns=ns)
    by_port = {(e.local_port, e.state): e for e in table.sockets}
    ssh, mysql, pg = by_port[(22, "LISTEN")], by_port[(3306, "LISTEN")], by_port[(5432, "LISTEN")]
    assert ssh.inbound == "accept" and ssh.inbound_rule is not None and "tcp dport 22 accept" in ssh.inbound_rule
    assert mysql.inbound == "drop" and mysql.inbound_rule is not None and "policy drop" in mysql.inbound_rule
    assert pg.inbound is None  # loopback only: not reachable from outside whatever the firewall says
    assert not any(n.code == "exposed-sensitive" and n.port == 3306 for n in table.notes)
    fwd = by_port[(8080, "FORWARDED")]
    assert (fwd.remote_address, fwd.remote_port) == ("10.79.0.2", 80)
    # the DNAT'd packet is routed, so the input chain's drop policy does not apply to it
    assert fwd.inbound == "accept"
    other = report(netns=ns, inbound_from="10.79.0.2")
    assert {(e.local_port, e.inbound) for e in other.sockets if e.state == "LISTEN"} >= {(22, "accept"), (3306, "drop")}
    forget_state(netns=ns)
