"""Rendering of lab results, lists and status (tables and JSON field names)."""

from __future__ import annotations

from portkit.model.lab import HostAddress, HostStatus, LabResult, LabStatus, LabSummary, ServiceStatus
from portkit.render.jsonout import document, to_jsonable
from portkit.render.lab import render_ls, render_result, render_status


def _status(alive: bool, present: bool = True) -> LabStatus:
    svc = ServiceStatus(host="server", proto="tcp", listen="0.0.0.0:80", kind="http", alive=alive)
    return LabStatus(
        name="demo",
        state="up" if alive and present else "degraded",
        source="demo.yaml",
        created="2026-01-01T00:00:00Z",
        hosts=(
            HostStatus("client", "pk-demo-client", True, (HostAddress("lan", "10.0.1.2/24"),), (), None),
            HostStatus("server", "pk-demo-server", present, (HostAddress("lan", "10.0.1.3/24"), HostAddress("lan", "fd00::3/64")), (svc,), 42),
        ),
        links=("lan",),
    )


def test_status_table_lists_hosts_addresses_services() -> None:
    text = render_status(_status(True))
    lines = text.splitlines()
    assert lines[0].startswith("lab demo: up")
    assert lines[1].split() == ["HOST", "NAMESPACE", "ADDRESSES", "SERVICES"]
    assert "server  pk-demo-server  10.0.1.3/24 (lan)  tcp 0.0.0.0:80 http" in text
    assert "fd00::3/64 (lan)" in lines[-1]
    assert "not running" not in text


def test_status_names_what_is_wrong() -> None:
    text = render_status(_status(False, present=False))
    assert "degraded" in text.splitlines()[0]
    assert "missing namespaces: pk-demo-server" in text
    assert "services not running: server tcp 0.0.0.0:80" in text
    assert "portkit lab down demo && portkit lab up demo.yaml" in text


def test_json_field_names() -> None:
    doc = to_jsonable(document(lab=_status(True)))
    assert doc["schema"] == 1
    server = doc["lab"]["hosts"][1]
    assert server["addresses"][0] == {"link": "lan", "address": "10.0.1.3/24"}
    assert server["services"][0] == {"host": "server", "proto": "tcp", "listen": "0.0.0.0:80", "kind": "http", "alive": True}
    assert server["runner_pid"] == 42


def test_results_and_ls() -> None:
    assert "lab x is up: 2 namespaces, 1 services" in render_result(LabResult("x", "up", ("a", "b"), 1, 0.1))
    assert "already up" in render_result(LabResult("x", "already-up", ("a",), 0, 0.0))
    assert "is down" in render_result(LabResult("x", "down", ("a",), 0, 0.0))
    assert "no lab is up" in render_ls(())
    table = render_ls((LabSummary("x", "up", 2, 3, "x.yaml", "t"),))
    assert table.splitlines()[1].split() == ["x", "up", "2", "3", "t", "x.yaml"]
