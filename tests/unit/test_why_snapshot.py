"""`portkit why --facts-in/--facts-out`: reasoning over a recorded snapshot, with no I/O.

The snapshots in tests/fixtures/why/ were recorded in the why labs with ``--facts-out -``
(router: DNAT to a port its forward chain drops; client: a path filtered after hop 2).
They double as a format check: a renamed Facts field fails to read them, which is the cue
to keep the old name or give the snapshot a new schema number.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import pathlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from portkit.cli.main import main
from portkit.errors import FileFormatError, InputError
from portkit.model.diagnosis import Facts, ProbeFact
from portkit.ops import why as ops

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "why"
ROUTER = FIXTURES / "router-forward-drop.json"
CLIENT = FIXTURES / "client-filtered-on-path.json"


class IOAttempt(AssertionError):
    pass


@pytest.fixture
def no_io(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every way the gathering step reaches the system raises: sockets (netlink included),
    name resolution, subprocesses, and files under /proc, /sys and /run."""

    def refuse(what: str) -> Any:
        def raiser(*args: Any, **kwargs: Any) -> Any:
            raise IOAttempt(f"I/O during a --facts-in run: {what} {args[:2]!r}")

        return raiser

    for name in ("socket", "socketpair", "create_connection", "getaddrinfo", "gethostbyname", "fromfd"):
        monkeypatch.setattr(socket, name, refuse(f"socket.{name}"))
    monkeypatch.setattr(subprocess, "Popen", refuse("subprocess.Popen"))
    monkeypatch.setattr(os, "system", refuse("os.system"))
    for name in ("fork", "execv", "execve", "posix_spawn"):
        monkeypatch.setattr(os, name, refuse(f"os.{name}"))
    real_open, real_os_open = builtins.open, os.open
    system_dirs = ("/proc", "/sys", "/run", "/etc")

    def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str) and file.startswith(system_dirs):
            raise IOAttempt(f"I/O during a --facts-in run: open {file!r}")
        return real_open(file, *args, **kwargs)

    def guarded_os_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(path, str) and path.startswith(system_dirs):
            raise IOAttempt(f"I/O during a --facts-in run: os.open {path!r}")
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    yield


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def test_router_snapshot_gives_the_forward_finding() -> None:
    facts = ops.read_facts(str(ROUTER))
    assert facts.roles == frozenset({"router"}) and facts.forwards[0].dnat is not None
    d = ops.diagnose_facts(facts)
    assert not d.reachable
    assert [f.code for f in d.findings] == ["FIREWALL_FORWARD"]
    f = d.findings[0]
    assert "10.0.31.2:2990" in f.message
    assert "forward rule (table inet filter chain forward handle 9): tcp dport 2990 drop" in f.evidence
    assert f.fix == (
        "nft insert rule inet filter forward position 9 ip saddr 198.51.100.10 ip daddr 10.0.31.2 tcp dport 2990 accept"
    )
    assert {c.name: c.status for c in d.checks} == {
        "resolve": "skipped",
        "dnat": "pass",
        "inbound": "fail",
        "forward": "fail",
        "conntrack": "skipped",
    }


def test_client_snapshot_keeps_the_trace_with_its_internal_fields() -> None:
    facts = ops.read_facts(str(CLIENT))
    assert facts.trace is not None and facts.trace.method == "recverr+raw"
    assert [h.kind for h in facts.trace.hops][:3] == ["time-exceeded", "time-exceeded", "silent"]
    d = ops.diagnose_facts(facts)
    assert d.findings[0].code == "FILTERED_ON_PATH"
    assert "after hop 2 (10.72.2.2)" in d.findings[0].message
    assert d.trace == facts.trace  # the verbose table shows the recorded hops


def test_snapshot_text_is_stable() -> None:
    """Reading a recorded snapshot and writing it again gives the same document."""
    for path in (ROUTER, CLIENT):
        text = path.read_text(encoding="utf-8")
        again = json.dumps(ops.facts_document(ops.read_facts(str(path))), indent=2, ensure_ascii=False) + "\n"
        assert again == text


def test_facts_in_does_no_io(no_io: None, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(["why", "--facts-in", str(ROUTER), "--json"], capsys)
    assert (rc, err) == (1, "")
    doc = json.loads(out)
    assert doc["schema"] == 1 and doc["findings"][0]["code"] == "FIREWALL_FORWARD"
    rc, out, err = run(["why", "198.51.100.1:8083", "--facts-in", str(CLIENT), "-v", "--lang", "ko"], capsys)
    assert rc == 2 and "is not the snapshot's server:81/tcp" in err
    rc, out, err = run(["why", "server:81", "--facts-in", str(CLIENT), "-v", "--lang", "ko"], capsys)
    assert (rc, err) == (1, "") and "FILTERED_ON_PATH" in out and "10.72.2.2" in out


def test_the_io_guard_is_real(no_io: None) -> None:
    """The guard above catches a gathering: --facts-in passing under it means something."""
    with pytest.raises(IOAttempt):
        ops.why_facts("127.0.0.1:1", trace=False)


def test_facts_in_from_stdin(no_io: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(CLIENT.read_bytes())))
    rc, out, _ = run(["why", "--facts-in", "-", "--json"], capsys)
    assert rc == 1 and json.loads(out)["findings"][0]["code"] == "FILTERED_ON_PATH"


def test_replay_equals_the_diagnosis_of_the_original() -> None:
    facts = ops.read_facts(str(ROUTER))
    from portkit.render.why import why_json

    assert why_json(ops.diagnose_facts(facts)) == why_json(
        ops.diagnose_facts(ops.parse_facts(json.dumps(ops.facts_document(facts))))
    )


# ----------------------------------------------------------------------------- --facts-out


@pytest.fixture
def gathered(monkeypatch: pytest.MonkeyPatch) -> Facts:
    """why_facts answers from the recorded router snapshot (the gathering is the labs' job)."""
    facts = ops.read_facts(str(ROUTER))
    calls: list[str] = []

    def fake(target: str, **kw: Any) -> Facts:
        calls.append(target)
        return facts

    monkeypatch.setattr(ops, "why_facts", fake)
    return facts


def test_facts_out_file_writes_the_snapshot_and_prints_the_diagnosis(
    gathered: Facts, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.json"
    rc, out, err = run(["why", "198.51.100.1:8083", "--facts-out", str(path), "--json"], capsys)
    assert (rc, err) == (1, "")
    assert json.loads(out)["findings"][0]["code"] == "FIREWALL_FORWARD"
    assert ops.read_facts(str(path)) == gathered
    assert path.read_text(encoding="utf-8") == ROUTER.read_text(encoding="utf-8")


def test_facts_out_dash_writes_only_the_snapshot(gathered: Facts, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(["why", "198.51.100.1:8083", "--facts-out", "-"], capsys)
    assert (rc, err) == (1, "")  # the exit status is still the diagnosis's
    assert ops.parse_facts(out) == gathered
    rc, out, err = run(["why", "198.51.100.1:8083", "--facts-out", "-", "--json"], capsys)
    assert rc == 2 and out == "" and "both write to stdout" in err


def test_facts_out_refuses_a_bad_path_before_gathering(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_gathering(*a: Any, **kw: Any) -> Facts:
        raise AssertionError("gathered although the output path was refused")

    monkeypatch.setattr(ops, "why_facts", no_gathering)
    for bad in (str(tmp_path / "missing" / "s.json"), str(tmp_path), "/dev/null"):
        rc, out, err = run(["why", "10.0.0.1:80", "--facts-out", bad], capsys)
        assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, (bad, err)
    assert list(tmp_path.iterdir()) == []


def test_facts_out_keeps_the_old_file_on_failure(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.json"
    path.write_text("old", encoding="utf-8")
    os.chmod(path, 0o600)
    facts = ops.read_facts(str(ROUTER))
    ops.dump_facts(facts, str(path))
    assert os.stat(path).st_mode & 0o777 == 0o600  # an existing file keeps its mode
    bad = replace(facts, probe=ProbeFact("10.0.0.1", 1, "tcp", "open", "syn-ack", rtt_ms=float("nan")))
    with pytest.raises(ValueError):
        ops.dump_facts(bad, str(path))
    assert ops.read_facts(str(path)) == facts and [p.name for p in tmp_path.iterdir()] == ["s.json"]


# ----------------------------------------------------------------------------- refusals


def snapshot(tmp_path: pathlib.Path, doc: Any) -> str:
    path = tmp_path / "s.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return str(path)


def router_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(ROUTER.read_text(encoding="utf-8"))
    return doc


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: "not json {", "not JSON"),
        (lambda d: [1, 2], "expected a JSON object"),
        (lambda d: {**d, "schema": 2}, "schema 2 is not supported; valid ones are: 1"),
        (lambda d: {**d, "schema": True}, "schema true is not supported"),
        (lambda d: {k: v for k, v in d.items() if k != "schema"}, "schema null is not supported"),
        (lambda d: {**d, "kind": "diagnosis"}, 'expected "kind": "why-facts"'),
        (lambda d: {"schema": 1, "reachable": False, "findings": []}, "not a facts snapshot"),
        (lambda d: {**d, "extra": 1}, "unknown key 'extra'"),
        (lambda d: {**d, "facts": {**d["facts"], "port": "8083"}}, "facts.port: expected an integer, got a string"),
        (lambda d: {**d, "facts": {**d["facts"], "port": 0}}, "facts.port: 0 is not a port"),
        (lambda d: {**d, "facts": {**d["facts"], "proto": "sctp"}}, "facts.proto: invalid protocol 'sctp'"),
        (lambda d: {**d, "facts": {**d["facts"], "roles": ["router", "admin"]}}, "invalid role 'admin'"),
        (lambda d: {**d, "facts": {**d["facts"], "address": "nope"}}, "'nope' is not an IPv4 or IPv6 address"),
        (lambda d: {**d, "facts": {**d["facts"], "tarjet": "x"}}, "unknown key 'tarjet' in Facts"),
        (
            lambda d: {**d, "facts": {**d["facts"], "forwards": [{**d["facts"]["forwards"][0], "port": None}]}},
            "facts.forwards[0].port: expected an integer, got null",
        ),
        (
            lambda d: {**d, "facts": {k: v for k, v in d["facts"].items() if k != "roles"}},
            "missing key 'roles' in Facts",
        ),
    ],
)
def test_garbage_is_refused_in_one_line_exit_2(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], mutate: Any, message: str
) -> None:
    path = snapshot(tmp_path, mutate(router_doc()))
    rc, out, err = run(["why", "--facts-in", path], capsys)
    assert rc == 2 and out == ""
    assert err.startswith(f"portkit: {path}") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unreadable_snapshots_are_bad_input(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileFormatError, match="no such facts snapshot"):
        ops.read_facts(str(tmp_path / "missing.json"))
    with pytest.raises(FileFormatError, match="is a directory"):
        ops.read_facts(str(tmp_path))
    (tmp_path / "b.json").write_bytes(b'{"schema": 1, "kind": "why-facts", "facts": "\xff"}')
    with pytest.raises(FileFormatError, match="not UTF-8"):
        ops.read_facts(str(tmp_path / "b.json"))
    with pytest.raises(FileFormatError, match="nested too deeply"):
        ops.parse_facts('{"schema": 1, "kind": "why-facts", "facts": ' + "[" * 100_000 + "]" * 100_000 + "}")


@pytest.mark.parametrize(
    "extra",
    [["--from", "10.0.0.1"], ["--timeout", "2"], ["--no-trace"], ["-4"], ["-6"], ["--facts-out", "x.json"]],
)
def test_gathering_options_are_refused_with_facts_in(
    extra: list[str], no_io: None, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(["why", "--facts-in", str(ROUTER), *extra], capsys)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert extra[0] in err


def test_target_must_agree_with_the_snapshot(capsys: pytest.CaptureFixture[str]) -> None:
    facts = ops.read_facts(str(ROUTER))
    ops.check_snapshot_target(facts, "198.51.100.1:8083")
    ops.check_snapshot_target(facts, "198.51.100.1:8083/tcp")
    for other in ("198.51.100.1:8084", "198.51.100.1:8083/udp", "198.51.100.2:8083", "router:8083"):
        with pytest.raises(InputError, match=r"is not the snapshot's 198\.51\.100\.1:8083/tcp"):
            ops.check_snapshot_target(facts, other)
    client = ops.read_facts(str(CLIENT))
    ops.check_snapshot_target(client, "SERVER:81")  # host names compare without case
    rc, _, err = run(["why"], capsys)
    assert rc == 2 and "--facts-in" in err
