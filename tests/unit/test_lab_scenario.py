"""Scenario validation (with line numbers) and the pure lab plan."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portkit.errors import FileFormatError, InputError
from portkit.lab import plan, scenario
from portkit.lab.pytest_plugin import unique_name

LABS = Path(__file__).resolve().parents[2] / "examples" / "labs"

BASE: dict[str, Any] = {
    "name": "t",
    "hosts": {"a": {}, "b": {}},
    "links": [{"name": "lan", "ends": {"a": ["10.0.0.2/24", "fd00::2/64"], "b": ["10.0.0.3/24", "fd00::3/64"]}}],
}


def with_host(**b: Any) -> dict[str, Any]:
    return {**BASE, "hosts": {"a": {}, "b": b}}


@pytest.mark.parametrize("name", ["inbound-rules", "loopback-only", "port-forward", "nat-pat", "dual-stack"])
def test_shipped_scenarios_are_valid_and_commented(name: str) -> None:
    path = LABS / f"{name}.yaml"
    sc = scenario.load(path)
    assert sc.name == name and sc.source == str(path)
    assert "# Try:" in path.read_text()
    assert scenario.load(name) == sc  # a shipped example by name


def test_dict_and_yaml_text_load_alike() -> None:
    text = "name: t\nhosts: {a: {}, b: {}}\nlinks:\n  - {name: lan, ends: {a: [10.0.0.2/24, 'fd00::2/64'], b: [10.0.0.3/24, 'fd00::3/64']}}\n"
    y = scenario.load(text)
    d = scenario.load(BASE)
    assert y.hosts == d.hosts and y.links == d.links


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    p = tmp_path / "my-lab.yaml"
    p.write_text("hosts: {a: {}}\nlinks: []\n")
    assert scenario.load(p).name == "my-lab"


def test_service_defaults_and_listen_forms() -> None:
    sc = scenario.load(
        with_host(
            services=[
                {"listen": "[::]:80"},
                {"listen": "10.0.0.3:22", "kind": "banner"},
                {"proto": "udp", "listen": "[fd00::3]:53", "kind": "silent"},
            ]
        )
    )
    s = sc.host("b").services
    assert (s[0].proto, s[0].address, s[0].port, s[0].kind) == ("tcp", "::", 80, "echo")
    assert s[1].banner.startswith("SSH-2.0-") and s[1].listen == "10.0.0.3:22"
    assert s[2].listen == "[fd00::3]:53"


def _err(data: Any) -> str:
    with pytest.raises(FileFormatError) as ei:
        scenario.load(data)
    return str(ei.value)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({**BASE, "hostz": {}}, "unknown key 'hostz'"),
        (with_host(services=[{"listen": "0.0.0.0:0"}]), "port 0 is out of range"),
        (with_host(services=[{"listen": "0.0.0.0"}]), "has no port"),
        (with_host(services=[{"listen": 80}]), "needs an address"),
        (with_host(services=[{"listen": "10.0.0.2:80"}]), "host 'b' has no address 10.0.0.2"),
        (with_host(services=[{"listen": ":::80"}]), "write IPv6 as [ADDRESS]:PORT"),
        (with_host(services=[{"proto": "udp", "listen": "0.0.0.0:80", "kind": "http"}]), "TCP only"),
        (with_host(services=[{"proto": "sctp", "listen": "0.0.0.0:80"}]), "invalid proto 'sctp'"),
        (with_host(services=[{"listen": "0.0.0.0:80", "kind": "ftp"}]), "valid ones are: echo, http, banner, silent"),
        (with_host(services=[{"listen": "0.0.0.0:80"}, {"listen": "0.0.0.0:80"}]), "already defined"),
        (with_host(routes=[{"to": "default", "via": "10.0.0.3"}]), "not an address of another host"),
        (with_host(routes=[{"to": "default", "via": "10.9.0.1"}]), "not an address of another host"),
        (with_host(routes=[{"to": "0.0.0.0/1", "via": "10.0.0.2"}]), "leads outside the lab"),
        (with_host(routes=[{"to": "fd00:9::/64", "via": "10.0.0.2"}]), "different IP versions"),
        (with_host(nat={"masquerade": [{"oif": "wan"}]}), "host 'b' has no link 'wan'"),
        (with_host(nat={"forwards": [{"port": 80, "to": "8.8.8.8:80"}]}), "not an address of this lab"),
        (with_host(forward="yes"), "true or false"),
        (with_host(firewall=["x"]), "nftables text"),
        ({**BASE, "name": "Bad_Name"}, "invalid lab name"),
        ({**BASE, "hosts": {"a": {}, "b": {}, "C": {}}}, "invalid host name"),
        ({**BASE, "links": [{"name": "lan", "ends": {"a": ["10.0.0.2/24"]}}]}, "exactly 2 hosts"),
        ({**BASE, "links": [{"name": "lan", "ends": {"a": ["10.0.0.2"], "b": []}}]}, "needs a prefix length"),
        ({**BASE, "links": [{"name": "lan", "ends": {"a": ["10.0.0.0/24"], "b": []}}]}, "network or broadcast"),
        ({**BASE, "links": [{"name": "lan", "ends": {"a": ["2a00::1/64"], "b": []}}]}, "not private"),
        ({**BASE, "links": [{"name": "averyveryverylongname", "ends": {"a": [], "b": []}}]}, "up to 15"),
        ({**BASE, "links": [*BASE["links"], {"name": "lan", "ends": {"a": [], "b": []}}]}, "duplicate link name"),
    ],
)
def test_problems_are_named(data: Any, problem: str) -> None:
    assert problem in _err(data)


def test_errors_carry_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("hosts:\n  a: {}\n  b:\n    services:\n      - proto: tcp\n        listen: '0.0.0.0:99999'\nlinks: []\n")
    with pytest.raises(FileFormatError) as ei:
        scenario.load(p)
    assert ei.value.line == 6 and ei.value.path == str(p)
    assert str(ei.value).startswith(f"{p}:6: hosts.b.services.0.listen: port 99999")


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("hosts: {a: {}}\nlinks: []\nhosts: {b: {}}\n")
    with pytest.raises(FileFormatError, match=r":3: duplicate key 'hosts'"):
        scenario.load(p)


def test_missing_file_is_input_error() -> None:
    with pytest.raises(InputError, match="no scenario file"):
        scenario.load("/nonexistent/x.yaml")


# --- plan -------------------------------------------------------------------------


def test_plan_names_and_commands() -> None:
    sc = scenario.load(LABS / "nat-pat.yaml")
    p = plan.make_plan(sc, "nat-pat")
    assert p.host_ns["client1"] == "pk-nat-pat-client1"
    assert p.switch_ns == ("pk-nat-pat.lan",)
    links = plan.ip_batch_links(p)
    assert "link add name lan netns pk-nat-pat.lan type bridge" in links
    assert "link add name wan netns pk-nat-pat-router type veth peer name wan netns pk-nat-pat-server" in links
    ports = re.findall(r"peer name (pk[0-9a-f]{8}) netns pk-nat-pat\.lan", links)
    assert len(ports) == 3 and len(set(ports)) == 3
    client = next(c for c in p.configs if c.ns == "pk-nat-pat-client1")
    inside = plan.ip_batch_inside(client)
    assert inside.splitlines() == [
        "link set lo up",
        "addr add 10.0.40.11/24 dev lan",
        "link set dev lan up",
        "route add default via 10.0.40.1",
    ]
    router = next(c for c in p.configs if c.ns == "pk-nat-pat-router")
    assert ("net/ipv4/ip_forward", "1") in router.sysctls and ("net/ipv4/icmp_ratelimit", "0") in router.sysctls
    assert 'meta nfproto ipv4 oifname "wan" masquerade' in router.nft
    assert "10.0.40.1\trouter router.lan" in p.hosts_file


def test_nodad_and_dnat_text() -> None:
    sc = scenario.load(
        with_host(forward=True, nat={"forwards": [{"port": 8080, "to": "[fd00::2]:2988", "iif": "lan"}, {"proto": "udp", "port": 53, "to": "10.0.0.2"}]})
    )
    p = plan.make_plan(sc, "t")
    b = next(c for c in p.configs if c.ns == "pk-t-b")
    assert "addr add fd00::3/64 dev lan nodad" in plan.ip_batch_inside(b)
    assert 'meta nfproto ipv6 iifname "lan" tcp dport 8080 dnat ip6 to [fd00::2]:2988' in b.nft
    assert "meta nfproto ipv4 udp dport 53 dnat ip to 10.0.0.2:53" in b.nft


def test_resolver_avoids_a_dns_service() -> None:
    sc = scenario.load(with_host(services=[{"proto": "udp", "listen": "0.0.0.0:53"}]))
    assert "nameserver ::1" in plan.resolv_conf(sc.host("b"))
    assert "nameserver 127.0.0.1" in plan.resolv_conf(sc.host("a"))


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40), st.text(min_size=1, max_size=30))
def test_port_names_fit_the_kernel(lab: str, host: str) -> None:
    name = plan.port_name(lab, "lan", host)
    assert name.startswith("pk") and len(name) <= 15


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40))
def test_unique_names_are_valid_lab_names(base: str) -> None:
    base = base.lstrip("-") or "x"
    name = unique_name(base)
    assert len(name) <= scenario.MAX_LAB_NAME and re.match(r"^[a-z0-9][a-z0-9-]*$", name)


@pytest.mark.parametrize("bad", ["../x", "A", "", "a/b", "x" * 41, "-x"])
def test_lab_names_are_checked_before_use_as_paths(bad: str) -> None:
    from portkit.lab import state

    with pytest.raises(InputError, match="invalid lab name"):
        state.state_path(bad)


def test_invalid_file_stem_needs_a_name(tmp_path: Path) -> None:
    p = tmp_path / "My_Lab.yaml"
    p.write_text("hosts: {a: {}}\nlinks: []\n")
    with pytest.raises(FileFormatError, match="add a 'name:'"):
        scenario.load(p)
    assert scenario.load(p, default_name="my-lab").name == "my-lab"


# TCP services that the kernel would refuse to bind side by side are a scenario error
# (file, line, exit 2), caught before anything is created.


def services_on_a(*services: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "binds",
        "hosts": {"a": {"services": list(services)}, "b": {}},
        "links": [{"name": "lan", "ends": {"a": ["10.0.97.1/24", "fd00:97::1/64"], "b": ["10.0.97.2/24"]}}],
    }


def tcp(listen: str, **kw: Any) -> dict[str, Any]:
    return {"proto": "tcp", "listen": listen, "kind": "echo", **kw}


@pytest.mark.parametrize(
    ("services", "words"),
    [
        (
            (tcp("0.0.0.0:80"), tcp("10.0.97.1:80")),
            "service tcp 10.0.97.1:80 overlaps services.0 (tcp 0.0.0.0:80)",
        ),
        (
            (tcp("127.0.0.1:80"), tcp("0.0.0.0:80")),
            "service tcp 0.0.0.0:80 overlaps services.0 (tcp 127.0.0.1:80)",
        ),
        ((tcp("[::]:80"), tcp("[::1]:80")), "service tcp [::1]:80 overlaps services.0 (tcp [::]:80)"),
        ((tcp("[::]:80", v6only=False), tcp("0.0.0.0:80")), "overlaps services.0 (tcp [::]:80)"),
        ((tcp("[::]:80", v6only=True), tcp("[fd00:97::1]:80")), "overlaps services.0"),
    ],
)
def test_overlapping_tcp_binds_are_refused(services: tuple[dict[str, Any], ...], words: str) -> None:
    with pytest.raises(FileFormatError, match="overlaps") as info:
        scenario.load(services_on_a(*services))
    assert words in str(info.value) and "hosts.a.services.1.listen" in str(info.value)


@pytest.mark.parametrize(
    "services",
    [
        (tcp("0.0.0.0:80"), tcp("[::]:80")),  # [::] becomes v6-only next to an IPv4 twin
        (tcp("127.0.0.1:80"), tcp("[::]:80")),
        (tcp("10.0.97.1:80"), tcp("127.0.0.1:80")),  # two specific addresses
        (tcp("0.0.0.0:80"), tcp("0.0.0.0:81")),
        (
            {"proto": "udp", "listen": "0.0.0.0:53"},
            {"proto": "udp", "listen": "10.0.97.1:53"},
        ),  # SO_REUSEADDR
        (tcp("0.0.0.0:7"), {"proto": "udp", "listen": "0.0.0.0:7"}),
    ],
)
def test_binds_the_kernel_allows_pass(services: tuple[dict[str, Any], ...]) -> None:
    assert len(scenario.load(services_on_a(*services)).hosts[0].services) == 2


def test_a_binary_file_is_bad_input_not_an_internal_error(tmp_path: Path) -> None:
    blob = tmp_path / "blob.yaml"
    blob.write_bytes(b"name: x\n\xd0\xff\xfe binary")
    with pytest.raises(FileFormatError, match="not UTF-8 text"):
        scenario.load(blob)
