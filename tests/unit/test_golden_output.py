"""Golden files: the table output of every command, rendered from fixed model objects.

Each case builds its result objects by hand (no sockets, no files, no clock) and renders
them the way the command does, in English (and ``why`` once in Korean), without colour.
The text must equal tests/golden/<case>.txt byte for byte. After a deliberate change to a
renderer, rewrite the files with ``pytest tests/unit/test_golden_output.py --update-golden``
and review the diff like code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from portkit.engine.diagnosis import diagnose
from portkit.engine.scanplan import group_ports
from portkit.i18n import Message, translator
from portkit.model.diagnosis import Facts, Listener, RuleVerdict
from portkit.model.firewall import (
    ApplyResult,
    DecidedBy,
    FwCheckResult,
    FwStatus,
    PolicyListing,
    PolicyRule,
    PolicyWarning,
    PortRange,
    RulesetView,
    ShowChain,
    ShowHook,
    ShowRule,
    ShowSet,
    TraceStep,
    TranslatedDestination,
)
from portkit.model.forward import KernelForwardResult, KernelForwardRow
from portkit.model.lab import HostAddress, HostStatus, LabResult, LabStatus, LabSummary, ServiceStatus
from portkit.model.nat import NatEntry, NatTuple
from portkit.model.probe import (
    CheckReport,
    HostResult,
    PortResult,
    PortState,
    ProbeResult,
    Reason,
    ScanReport,
)
from portkit.model.sockets import (
    ContainerRef,
    FreePorts,
    Holder,
    KillOutcome,
    Note,
    PortInfo,
    ProcessRef,
    ServiceName,
    SocketEntry,
    WhoReport,
)
from portkit.model.trace import HOP_DESTINATION, HOP_SILENT, HOP_TIME_EXCEEDED, TraceHop, TraceResult
from portkit.render import firewall as fw_render
from portkit.render import lab as lab_render
from portkit.render.forward import render_kernel
from portkit.render.info import free_text, info_text
from portkit.render.nat import render_nat
from portkit.render.probe import check_table, scan_table
from portkit.render.sockets import kill_text, ls_text, report_text, who_text
from portkit.render.why import trace_table, trace_text, why_text

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
EN = translator("en")


# -- sockets: report, ls, who, free, info ------------------------------------------------

NGINX = (ProcessRef(100, "nginx", "root"), ProcessRef(101, "nginx", "www-data"))


def socket_fields(**kw: object) -> dict[str, object]:
    base: dict[str, object] = dict(
        proto="tcp", family="ipv4", local_address="0.0.0.0", local_port=3306, remote_address=None,
        remote_port=None, state="LISTEN", pid=None, process=None, user="mysql", processes=(),
        service="mysql", port_class="registered", exposure="all", inbound=None, inbound_rule=None,
        container=None,
    )  # fmt: skip
    base.update(kw)
    procs = base["processes"]
    if isinstance(procs, tuple) and procs:
        base["pid"], base["process"] = procs[0].pid, procs[0].name
    return base


def socket_row(**kw: object) -> tuple[object, ...]:
    return tuple(socket_fields(**kw).values())


ROWS = [
    socket_row(processes=(ProcessRef(900, "mysqld", "mysql"),)),
    socket_row(local_port=80, service="http", port_class="well-known", processes=NGINX, user="root", inbound="accept", inbound_rule="tcp dport 80 accept"),
    socket_row(family="ipv6", local_address="::1", local_port=40000, exposure="loopback", service=None, port_class="dynamic", user="dev",
               processes=(ProcessRef(7, "node", "dev"),)),
    socket_row(proto="udp", state="UNCONN", local_port=53, service="domain", port_class="well-known", user=None),
    socket_row(state="ESTABLISHED", local_address="10.0.0.5", local_port=22, remote_address="10.0.0.9", remote_port=51000,
               exposure="address", service="ssh", port_class="well-known", user="root", processes=(ProcessRef(222, "sshd", "root"),)),
    socket_row(local_port=8080, service="http-alt", port_class="registered", user="root", processes=(ProcessRef(4242, "docker-proxy", "root"),),
               container=ContainerRef("docker", "3f2a9c1b0d4e", "web", "busybox", 80, "172.17.0.2", "proxy")),
    socket_row(local_port=8081, service=None, port_class="registered", user=None, state="PUBLISHED",
               container=ContainerRef("docker", "77aa00bb11cc", "api", "pk-busybox:1", 8000, "172.17.0.3", "dnat")),
]  # fmt: skip
NOTES = (
    Note("exposed-sensitive", 3306, "tcp", "3306/tcp (mysql) listens on all interfaces; bind it to 127.0.0.1 or filter it"),
    Note("ephemeral-listener", 40000, "tcp", "40000/tcp listens inside the ephemeral range 32768-60999"),
)


def _holder(**kw: object) -> Holder:
    fields = socket_fields(**kw)
    return Holder(**fields, cmdline="nginx: master process /usr/sbin/nginx", started="2026-01-01T00:00:00+00:00")  # type: ignore[arg-type]


def case_report() -> str:
    return report_text([SocketEntry(*r) for r in ROWS], NOTES, color=False, tr=EN)  # type: ignore[arg-type]


def case_ls() -> str:
    return ls_text(ROWS, NOTES, color=False, tr=EN)


def case_who() -> str:
    listen = _holder(local_port=80, service="http", port_class="well-known", processes=NGINX, user="root")
    conns = tuple(
        _holder(local_port=80, service="http", port_class="well-known", processes=NGINX, user="root", state="ESTABLISHED",
                remote_address="10.0.0.9", remote_port=p)
        for p in (50001, 50002)
    )  # fmt: skip
    return "\n".join(
        [
            who_text(WhoReport(80, (listen, *conns), "tcp"), color=False, tr=EN),
            who_text(WhoReport(81, (), "udp"), color=False, tr=EN),
            kill_text((KillOutcome(100, "SIGTERM", True), KillOutcome(101, "SIGTERM", False)), tr=EN),
        ]
    )


def case_free() -> str:
    return free_text(FreePorts((8001, 8003, 8004), (8000, 8009), "tcp"))


def case_info() -> str:
    ssh = PortInfo(22, "well-known", (ServiceName("ssh", "tcp", "The Secure Shell (SSH) Protocol"), ServiceName("ssh", "udp", "")),
                   False, None, None, (32768, 60999), "ssh")  # fmt: skip
    dyn = PortInfo(50000, "dynamic", (), True, None, None, (32768, 60999), "50000")
    return info_text(ssh, color=False, tr=EN) + "\n\n" + info_text(dyn, color=False, tr=EN)


# -- check and scan --------------------------------------------------------------------


def case_check() -> str:
    report = CheckReport(
        (
            ProbeResult("web.lab", "10.9.0.2", 22, "tcp", PortState.OPEN, Reason.SYN_ACK, None, 0.41, "SSH-2.0-OpenSSH_9.6"),
            ProbeResult("web.lab", "10.9.0.2", 23, "tcp", PortState.CLOSED, Reason.CONN_REFUSED, None, 0.38),
            ProbeResult("web.lab", "10.9.0.2", 3000, "tcp", PortState.FILTERED, Reason.ADMIN_PROHIBITED, "10.9.0.1", 1.2),
            ProbeResult("10.9.0.3", "10.9.0.3", 53, "udp", PortState.OPEN_FILTERED, Reason.NO_RESPONSE, None, None),
        )
    )  # fmt: skip
    return check_table(report)


def case_scan() -> str:
    rows = [PortResult(p, "tcp", PortState.CLOSED, Reason.CONN_REFUSED, None) for p in range(1000, 1100)]
    rows += [PortResult(p, "tcp", PortState.FILTERED, Reason.NO_RESPONSE, None) for p in range(2000, 2030)]
    rows += [PortResult(p, "tcp", PortState.FILTERED, Reason.ADMIN_PROHIBITED, None, "10.9.0.1") for p in (3000, 3001)]
    rows += [PortResult(p, "tcp", PortState.OPEN, Reason.SYN_ACK, s) for p, s in ((22, "ssh"), (443, "https"))]
    shown, hidden = group_ports(rows)
    host = HostResult("web.lab", "10.9.0.2", shown, hidden, "up", "user-set", len(rows))
    return scan_table(ScanReport((host,), 1.5, False, (), 1_700_000_000.0, "connect", "tcp", "", "tcp:22,443,1000-1099,2000-2029,3000-3001"))


# -- fw show / check / list / status / apply -----------------------------------------------


def case_fw_show() -> str:
    view = RulesetView(
        hooks=(ShowHook("input", "ipv4", ("inet portkit input", "inet filter input")), ShowHook("prerouting", "ipv4", ("ip nat prerouting",))),
        chains=(
            ShowChain("inet portkit", "input", "filter", "input", 0, "drop", None,
                      (ShowRule(4, "ct state established,related accept"), ShowRule(5, "iif \"lo\" accept"),
                       ShowRule(6, "ip saddr @admins tcp dport 22 accept"), ShowRule(7, "tcp dport 23 reject"))),
            ShowChain("inet portkit", "helper", None, None, None, None, None, ()),
            ShowChain("inet filter", "input", "filter", "input", 10, "accept", None, (ShowRule(None, "udp dport 53 drop"),)),
            ShowChain("ip nat", "prerouting", "nat", "prerouting", -100, "accept", "eth0", (ShowRule(2, "tcp dport 8080 dnat to 10.0.0.2:80"),)),
        ),
        notes=("table ip nat is not portkit's: fw reset leaves it alone",),
        sets=(ShowSet("inet portkit", "admins", "set", "ipv4_addr", ("10.0.0.0/8", "192.0.2.7")), ShowSet("inet portkit", "empty", "set", "ipv4_addr", ())),
    )  # fmt: skip
    return fw_render.render_view(view) + "\n\n" + fw_render.render_view(RulesetView((), ()))


def case_fw_check() -> str:
    decided = FwCheckResult(
        "accept", "input", DecidedBy("inet portkit", "input", 6, "ip saddr @admins tcp dport 22 accept"),
        (TraceStep("inet portkit", "input", "ct state established,related accept", "no match"),
         TraceStep("inet portkit", "input", "ip saddr @admins tcp dport 22 accept", "accept")),
        TranslatedDestination("10.0.0.2", 80),
    )  # fmt: skip
    unknown = FwCheckResult("unknown", "input", None, (), None, "meta skuid cannot be known for a packet from outside")
    return fw_render.render_check(decided) + "\n\n" + fw_render.render_check(unknown)


def case_fw_list() -> str:
    rules = (
        PolicyRule("in", "allow", "tcp", (PortRange(22, 22),), ("ssh",), ("10.0.0.0/8",), line=3),
        PolicyRule("in", "deny", "any", (PortRange(6000, 6010),), ("6000-6010",), line=4),
        PolicyRule("out", "reject", "udp", (PortRange(53, 53),), ("53",), (), ("2001:db8::/32",), comment="no dns", line=5),
    )
    listing = PolicyListing("/etc/portkit/policy.yaml", True, "deny", "allow", True, rules, (PolicyWarning(4, 2, "rule 2 is redundant: rule 1 already decides it"),))
    empty = PolicyListing("/tmp/new.yaml", False, "deny", "allow", False, (), ())
    return fw_render.render_policy(listing) + "\n\n" + fw_render.render_policy(empty)


def case_fw_status() -> str:
    on = FwStatus("pk-lab-server", True, 7, "/etc/portkit/policy.yaml", False, True, 42.0, "rolled back", True)
    off = FwStatus(None, False, 0, "/etc/portkit/policy.yaml", None, False, None, None, False)
    return fw_render.render_status(on) + "\n\n" + fw_render.render_status(off)


def case_fw_apply() -> str:
    applied = ApplyResult(True, "pk-lab-server", "inet portkit", 7, "/run/portkit/firewall/pk-lab-server.previous.nft", None,
                          (PolicyWarning(4, 2, "rule 2 is redundant: rule 1 already decides it"),))  # fmt: skip
    return fw_render.render_apply(applied)


# -- forward --kernel and nat ------------------------------------------------------------------


def case_forward() -> str:
    rows = (
        KernelForwardRow("0.0.0.0:8080:10.0.0.2:80/tcp", "tcp", "0.0.0.0:8080", "10.0.0.2:80", True, True, True, ("198.51.100.0/24",), ("198.51.100.66/32",), None),
        KernelForwardRow("0.0.0.0:5353:10.0.0.2:53/udp", "udp", "0.0.0.0:5353", "10.0.0.2:53", False, False, False, (), (), None),
    )  # fmt: skip
    listed = KernelForwardResult("list", rows, (), (), None, None)
    added = KernelForwardResult("added", rows[:1], (rows[0].spec,), ("0.0.0.0:8080 listens beyond loopback",), 30.0, "pk-lab-router")
    none = KernelForwardResult("list", (), (), (), None, None)
    return "\n\n".join(render_kernel(r) for r in (listed, added, none))


def case_nat() -> str:
    entries = (
        NatEntry("tcp", "ESTABLISHED", "snat", False, NatTuple("10.0.40.11", 40000, "203.0.113.10", 7), NatTuple("203.0.113.1", 40000, "203.0.113.10", 7), 431990),
        NatEntry("tcp", "ESTABLISHED", "snat", True, NatTuple("10.0.40.12", 40000, "203.0.113.10", 7), NatTuple("203.0.113.1", 65464, "203.0.113.10", 7), 431990),
        NatEntry("udp", None, "dnat", True, NatTuple("198.51.100.7", 5353, "198.51.100.1", 53), NatTuple("198.51.100.7", 5353, "10.0.30.2", 5353), 29),
        NatEntry("icmp", None, "both", False, NatTuple("10.0.40.11", None, "198.51.100.1", None), NatTuple("203.0.113.1", None, "10.0.30.2", None), 29),
    )  # fmt: skip
    return render_nat(entries) + "\n\n" + render_nat(())


# -- why and trace -------------------------------------------------------------------------------


def _loopback_only() -> Facts:
    return Facts(
        target="db.lab", port=3306, proto="tcp", address="10.0.2.2", roles=frozenset({"server"}), client="10.0.1.2",
        local_target=True, listeners=(Listener("127.0.0.1", 3306, "tcp", "mysqld", 42),),
        inbound=RuleVerdict("in", "accept", "tcp dport 3306 accept", "tcp 10.0.1.2 -> 10.0.2.2:3306 iif lan", "filter", "input", 4, "inet"),
    )  # fmt: skip


def case_why() -> str:
    return why_text(diagnose(_loopback_only(), Message), translator("en"))


def case_why_ko() -> str:
    return why_text(diagnose(_loopback_only(), Message), translator("ko"))


TRACE_FILTERED = TraceResult(
    "srv.lab", "10.0.2.2", 81, "tcp", False, "filtered",
    (TraceHop(1, "10.0.1.1", 0.2, HOP_TIME_EXCEEDED), TraceHop(2, None, None, HOP_SILENT)), "10.0.1.1",
)  # fmt: skip
TRACE_REACHED = TraceResult(
    "srv.lab", "10.0.2.2", 80, "tcp", True, "open",
    (TraceHop(1, "10.0.1.1", 0.25, HOP_TIME_EXCEEDED), TraceHop(2, "10.0.2.2", 0.5, HOP_DESTINATION)), "10.0.2.2",
)  # fmt: skip


def case_trace() -> str:
    en = translator("en")
    return "\n\n".join([trace_table(TRACE_FILTERED, en), trace_text(TRACE_FILTERED, en), trace_text(TRACE_REACHED, en)])


# -- lab -------------------------------------------------------------------------------------------


def case_lab() -> str:
    svc = ServiceStatus(host="server", proto="tcp", listen="0.0.0.0:80", kind="http", alive=False)
    status = LabStatus(
        name="demo", state="degraded", source="demo.yaml", created="2026-01-01T00:00:00Z",
        hosts=(
            HostStatus("client", "pk-demo-client", True, (HostAddress("lan", "10.0.1.2/24"),), (), None),
            HostStatus("server", "pk-demo-server", True, (HostAddress("lan", "10.0.1.3/24"), HostAddress("lan", "fd00::3/64")), (svc,), 42),
        ),
        links=("lan",),
    )  # fmt: skip
    return "\n\n".join(
        [
            lab_render.render_result(LabResult("demo", "up", ("pk-demo-client", "pk-demo-server"), 1, 0.8)),
            lab_render.render_result(LabResult("demo", "down", ("pk-demo-client", "pk-demo-server"), 0, 0.2)),
            lab_render.render_ls((LabSummary("demo", "up", 2, 1, "demo.yaml", "2026-01-01T00:00:00Z"),)),
            lab_render.render_ls(()),
            lab_render.render_status(status),
        ]
    )


CASES: dict[str, Callable[[], str]] = {
    name.removeprefix("case_"): fn for name, fn in sorted(globals().items()) if name.startswith("case_") and callable(fn)
}


@pytest.fixture(autouse=True)
def _fixed_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed width and English, whatever the terminal and locale of the test run."""
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("LINES", "40")
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG", "PORTKIT_LANG"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_table_output_matches_the_golden_file(case: str, update_golden: bool) -> None:
    text = CASES[case]() + "\n"
    path = GOLDEN / f"{case}.txt"
    if update_golden:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path.name}: run pytest {__file__} --update-golden"
    want = path.read_text(encoding="utf-8")
    assert text == want, f"{case}: the output changed; if on purpose, run pytest --update-golden and review the diff"
    assert "\x1b[" not in text


def test_every_golden_file_has_a_case() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == sorted(CASES)


def test_the_korean_story_differs_from_the_english() -> None:
    assert case_why() != case_why_ko()
