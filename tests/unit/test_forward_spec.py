"""forward SPEC and config parsing, client filters, kernel-forward nft text (pure)."""

from __future__ import annotations

import pathlib

import pytest

from portkit.engine.forwardnft import installed_specs, kernel_forward, render_script
from portkit.engine.forwardspec import client_allowed, parse_cidrs, parse_config, parse_spec
from portkit.errors import FileFormatError, InputError, PortSpecError, TargetError
from portkit.model.forward import ForwardSpec


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("8080:2988", ForwardSpec("127.0.0.1", 8080, "127.0.0.1", 2988, "tcp")),
        ("8080:2988/udp", ForwardSpec("127.0.0.1", 8080, "127.0.0.1", 2988, "udp")),
        ("8080:web.internal:80", ForwardSpec("127.0.0.1", 8080, "web.internal", 80, "tcp")),
        ("0.0.0.0:53:10.0.0.2:53/UDP", ForwardSpec("0.0.0.0", 53, "10.0.0.2", 53, "udp")),
        ("[::1]:8080:[fd00::2]:80", ForwardSpec("::1", 8080, "fd00::2", 80, "tcp")),
        ("[::]:443:10.0.0.2:8443/tcp", ForwardSpec("::", 443, "10.0.0.2", 8443, "tcp")),
        ("localhost:1:127.0.0.1:2", ForwardSpec("127.0.0.1", 1, "127.0.0.1", 2, "tcp")),
    ],
)
def test_good_specs(text: str, want: ForwardSpec) -> None:
    assert parse_spec(text) == want


def test_short_form_default_bind_is_loopback_like_ssh_L_but_kernel_can_choose() -> None:
    assert parse_spec("8080:2988").bind == "127.0.0.1"
    assert parse_spec("8080:2988", default_bind="0.0.0.0").bind == "0.0.0.0"


@pytest.mark.parametrize(
    ("text", "exc", "words"),
    [
        ("8080:", PortSpecError, "missing target port in '8080:'"),
        ("99999:1", PortSpecError, "listen port 99999 in '99999:1' is out of range; valid ports are 1-65535"),
        ("a:b:c", PortSpecError, "invalid listen port 'a' in 'a:b:c'"),
        ("0:1", PortSpecError, "out of range"),
        ("1:2:3:4:5", InputError, "malformed forward SPEC"),
        ("8080:2988/sctp", InputError, "invalid protocol 'sctp'"),
        ("[::1:80:1", TargetError, "unbalanced '['"),
        ("[nothex]:1:2.3.4.5:6", TargetError, "invalid IPv6 bind address"),
        ("web:1:2.3.4.5:6", TargetError, "a bind address is an IP address"),
        ("1:300.1.1.1:2", TargetError, "invalid IPv4 target host"),
        ("1:bad_host!:2", TargetError, "expected an IP address or a host name"),
        ("", InputError, "empty forward SPEC"),
    ],
)
def test_bad_specs_name_the_value(text: str, exc: type[Exception], words: str) -> None:
    with pytest.raises(exc) as info:
        parse_spec(text)
    assert words in str(info.value)
    assert "\n" not in str(info.value)
    assert getattr(info.value, "exit_code", None) == 2


def test_allow_deny_attached_and_validated() -> None:
    s = parse_spec("8080:2988", allow=["10.0.0.0/8", "192.0.2.7"], deny=["10.9.0.0/16"])
    assert s.allow == ("10.0.0.0/8", "192.0.2.7/32")
    assert s.deny == ("10.9.0.0/16",)
    with pytest.raises(TargetError, match=r"invalid CIDR block '10\.0\.0\.0/33'"):
        parse_spec("8080:2988", allow=["10.0.0.0/33"])


def test_client_filter_deny_wins_and_mapped_v4() -> None:
    allow = parse_cidrs(["10.0.0.0/8", "fd00::/8"])
    deny = parse_cidrs(["10.9.0.0/16"])
    assert client_allowed("10.1.2.3", allow, deny)
    assert not client_allowed("10.9.2.3", allow, deny)
    assert not client_allowed("192.0.2.1", allow, deny)
    assert client_allowed("::ffff:10.1.2.3", allow, deny)
    assert client_allowed("fd00::5", allow, deny)
    assert client_allowed("192.0.2.1", (), deny)


CONFIG = """\
allow: [127.0.0.0/8]
connect_timeout: 2.5
udp_idle_timeout: 30
forwards:
  - 80:22
  - "8443:10.0.0.2:443"
  - spec: "0.0.0.0:5353:10.0.0.2:53/udp"
    allow: [10.1.0.0/16]
    deny: 10.1.9.0/24
"""


def test_config_file() -> None:
    cfg = parse_config(CONFIG, "f.yaml")
    assert [str(s) for s in cfg.forwards] == [
        "127.0.0.1:80:127.0.0.1:22/tcp",  # not the sexagesimal 4822
        "127.0.0.1:8443:10.0.0.2:443/tcp",
        "0.0.0.0:5353:10.0.0.2:53/udp",
    ]
    assert cfg.forwards[0].allow == ("127.0.0.0/8",)
    assert cfg.forwards[2].allow == ("10.1.0.0/16",) and cfg.forwards[2].deny == ("10.1.9.0/24",)
    assert cfg.options.connect_timeout == 2.5 and cfg.options.udp_idle_timeout == 30


def test_forward_setup_merges_specs_config_and_overrides(tmp_path: pathlib.Path) -> None:
    """What `portkit forward` runs at start and on SIGHUP (ops/forward_setup.py)."""
    from portkit.ops.forward_setup import forward_setup, load_forward_config

    path = tmp_path / "forward.yaml"
    path.write_text(CONFIG)
    assert load_forward_config(str(path)) == parse_config(CONFIG, str(path))
    specs, options = forward_setup(["9000:22"], config=str(path), overrides={"drain": 0.0})
    assert [str(s) for s in specs][0::3] == ["127.0.0.1:9000:127.0.0.1:22/tcp", "0.0.0.0:5353:10.0.0.2:53/udp"]
    assert (options.connect_timeout, options.drain) == (2.5, 0.0)
    with pytest.raises(InputError, match=r"two forwards listen on 127\.0\.0\.1:80/"):
        forward_setup(["80:22"], config=str(path))
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(FileFormatError, match="not a text file"):
        load_forward_config(str(tmp_path / "bin.yaml"))
    with pytest.raises(FileFormatError, match="cannot read"):
        forward_setup([], config=str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("forwards: ['8080:']", "forwards[1]: missing target port"),
        ("forwards:\n  - 8080:\n", "forwards[1]: '8080:' is not a SPEC"),
        ("forward: [1:2]", "unknown key 'forward'"),
        ("forwards: []", "non-empty list"),
        ("forwards: [1:2, 1:3]", "already used by forwards[1]"),
        ("forwards: [1:2]\nconnect_timeout: soon", "invalid connect_timeout 'soon': give a number above 0"),
        ("forwards: [{spec: '1:2', alow: x}]", "unknown key 'alow'"),
        ("forwards: [1:2\n  - x", "f.yaml:"),
        ("", "empty config"),
    ],
)
def test_bad_config(text: str, words: str) -> None:
    with pytest.raises(FileFormatError) as info:
        parse_config(text, "f.yaml")
    assert words in str(info.value)
    assert str(info.value).startswith("f.yaml")



@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            "allow: [127.0.0.0/8]\nforwards:\n  - '1:2'\n  - {listen: 1, to: x}\n",
            4,
            "forwards[2]: unknown key 'listen'",
        ),
        ("forwards:\n  - '1:2'\n\n  - spec: '70000:1'\n", 4, "forwards[2]: listen port 70000"),
        ("- '1:2'\n- '1:3'\n", 2, "forwards[2]: 127.0.0.1:1/tcp is already used by forwards[1]"),
        ("forwards:\n  - spec: '1:2'\n    allow: [nonsense]\n", 2, "invalid CIDR block 'nonsense'"),
        ("forwards:\n  - [\n", 3, "not valid YAML"),
    ],
)
def test_config_errors_name_the_line_of_the_entry(text: str, line: int, words: str) -> None:
    with pytest.raises(FileFormatError) as info:
        parse_config(text, "fwd.yaml")
    assert info.value.line == line and words in str(info.value)
    assert str(info.value).startswith(f"fwd.yaml:{line}: ")


def test_bind_lport_tport_gets_a_hint_with_the_four_field_form() -> None:
    with pytest.raises(PortSpecError) as info:
        parse_spec("0.0.0.0:8080:2988")
    assert "e.g. 0.0.0.0:8080:127.0.0.1:2988" in str(info.value)
    # LPORT:THOST:TPORT (as ssh -L) still reads as such
    spec = parse_spec("8080:10.0.0.2:80")
    assert (spec.bind, spec.listen_port, spec.target_host, spec.target_port) == ("127.0.0.1", 8080, "10.0.0.2", 80)

def test_kernel_script_dnat_masquerade_and_local() -> None:
    s = parse_spec(
        "8080:10.0.30.2:2988", default_bind="0.0.0.0", allow=["198.51.100.0/24"], deny=["198.51.100.66"]
    )
    f = kernel_forward(s, local=True, target_is_local=False, netns=None)
    assert f.masquerade and f.local and f.family == 4
    text = render_script([(s, f)])
    assert text.startswith("table inet portkit_forward {}\ndelete table inet portkit_forward\n")
    assert (
        "meta nfproto ipv4 fib daddr type local ip saddr != { 198.51.100.66/32 } ip saddr { 198.51.100.0/24 } "
        'tcp dport 8080 dnat ip to 10.0.30.2:2988 comment "portkit-forward 0.0.0.0:8080:10.0.30.2:2988/tcp"'
    ) in text
    assert "chain output {" in text and "type nat hook output priority -100;" in text
    assert "ip daddr 10.0.30.2 tcp dport 2988 ct status dnat masquerade" in text
    v6 = parse_spec("[fd00::1]:80:[fd00::2]:8080/udp")
    f6 = kernel_forward(v6, local=False, target_is_local=True, netns=None)
    t6 = render_script([(v6, f6)])
    assert "ip6 daddr fd00::1 udp dport 80 dnat ip6 to [fd00::2]:8080" in t6
    assert "masquerade" not in t6 and "chain output" not in t6
    assert render_script([]).count("table") == 2  # removal: the table goes away


def test_kernel_forward_refuses_what_nat_cannot_do() -> None:
    with pytest.raises(InputError, match="cannot change the address family"):
        kernel_forward(parse_spec("[::]:80:10.0.0.2:80"), local=False, target_is_local=False, netns=None)
    with pytest.raises(InputError, match="add --local"):
        kernel_forward(parse_spec("80:10.0.0.2:80"), local=False, target_is_local=False, netns=None)
    with pytest.raises(TargetError, match="must be an IP address"):
        kernel_forward(parse_spec("0.0.0.0:80:web:80"), local=False, target_is_local=False, netns=None)


def test_installed_specs_reads_comments() -> None:
    ruleset = {
        "nftables": [
            {"metainfo": {}},
            {
                "rule": {
                    "table": "portkit_forward",
                    "chain": "prerouting",
                    "comment": "portkit-forward 0.0.0.0:1:10.0.0.2:2/tcp",
                }
            },
            {
                "rule": {
                    "table": "portkit_forward",
                    "chain": "output",
                    "comment": "portkit-forward 0.0.0.0:1:10.0.0.2:2/tcp",
                }
            },
            {"rule": {"table": "other", "chain": "x", "comment": "portkit-forward 0.0.0.0:9:10.0.0.2:9/tcp"}},
        ]
    }
    assert installed_specs(ruleset) == {"0.0.0.0:1:10.0.0.2:2/tcp": {"prerouting", "output"}}
