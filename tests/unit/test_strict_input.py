"""Strict input, one kind of value at a time (issue 12, items 7 and 8).

Ports are ASCII digits with a length limit, IPv4 literals are dotted quads, a link-local
IPv6 address names its interface, interface names follow the kernel's rules, numbers
refuse NaN/infinities/signs, and YAML is read with depth and alias limits.
"""

from __future__ import annotations

import ipaddress
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portkit.engine.endpoint import (
    MAX_PORT_DIGITS,
    check_ifname,
    check_name,
    parse_address,
    parse_endpoint,
    parse_number,
    parse_port,
    parse_target,
)
from portkit.engine.forwardspec import parse_config, parse_spec, spec_has_bind
from portkit.errors import FileFormatError, InputError, PortSpecError, TargetError
from portkit.parse.policy_yaml import load_policy
from portkit.parse.yamltext import MAX_DEPTH, MAX_NODES, compose, load

FAST = settings(max_examples=200, deadline=None)
# Digits of other scripts that str.isdigit() (and int()) accept: superscripts, Arabic-Indic,
# Extended Arabic-Indic, Devanagari, full-width.
UNICODE_DIGITS = "²³¹٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹०१२३४५६७८९０１２３４５６７８９"
non_ascii_digit_strings = st.text(
    alphabet=st.sampled_from(UNICODE_DIGITS + "0123456789"), min_size=1, max_size=6
).filter(lambda s: not s.isascii())


# ---- ports ------------------------------------------------------------------------------


@FAST
@given(st.integers(1, 65535))
def test_every_port_is_accepted(port: int) -> None:
    assert parse_port(str(port)) == port
    assert parse_port(f" {port} ") == port


@FAST
@given(non_ascii_digit_strings)
def test_any_non_ascii_digit_string_is_refused(text: str) -> None:
    assert text.isdigit() or any(c.isdigit() for c in text)  # what the old check accepted
    with pytest.raises(PortSpecError, match="ASCII digits"):
        parse_port(text)
    with pytest.raises(InputError):
        parse_endpoint(f"127.0.0.1:{text}")
    with pytest.raises(InputError):
        parse_spec(f"{text}:10.0.0.2:80")


def test_port_length_limit_is_checked_before_int() -> None:
    huge = "1" * 5000  # int() of more than 4300 digits raises ValueError
    with pytest.raises(PortSpecError) as exc:
        parse_port(huge)
    assert "5000 characters" in str(exc.value) and len(str(exc.value)) < 200
    assert parse_port("0" * (MAX_PORT_DIGITS - 2) + "80") == 80
    with pytest.raises(PortSpecError):
        parse_port("0" * MAX_PORT_DIGITS + "80")


@pytest.mark.parametrize("text", ["", " ", "+80", "-80", "80\n", "\t80", "8 0", "0x50", "80.0", "0", "65536"])
def test_malformed_ports(text: str) -> None:
    with pytest.raises(PortSpecError):
        parse_port(text)


def test_port_zero_where_it_is_allowed() -> None:
    assert parse_port("0", allow_zero=True) == 0


# ---- addresses and names ----------------------------------------------------------------


@FAST
@given(st.ip_addresses(v=4))
def test_any_dotted_quad_is_accepted(ip: ipaddress.IPv4Address) -> None:
    assert parse_address(str(ip)) == ip
    assert parse_target(str(ip)).text == str(ip)
    assert parse_endpoint(f"{ip}:22").host == str(ip)


@FAST
@given(st.lists(st.integers(0, 0xFFFFFF), min_size=1, max_size=3).map(lambda ns: ".".join(map(str, ns))))
def test_any_one_to_three_part_number_is_refused(text: str) -> None:
    # inet_aton reads "1.2.3" as 1.2.0.3 and "2130706433" as 127.0.0.1: never resolved
    with pytest.raises(TargetError, match="not a valid IPv4 address"):
        parse_target(text)
    with pytest.raises(TargetError):
        parse_endpoint(f"{text}:22")
    with pytest.raises(TargetError):
        check_name(text)


@pytest.mark.parametrize("text", ["0x7f.1", "0x7f000001", "017700000001", "1.2.3", "127.1", "1.2.3.4.5", "1.2.3.04", "256.1.1.1"])
def test_numeric_forms_inet_aton_would_take_are_refused(text: str) -> None:
    with pytest.raises(TargetError):
        parse_target(text)
    with pytest.raises(InputError):
        parse_spec(f"8080:{text}:80")


@pytest.mark.parametrize("name", ["localhost", "db.internal", "a-b.example.com", "x1", "host.example.", "_srv.example"])
def test_host_names_stay_names(name: str) -> None:
    assert parse_target(name).kind == "name"
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["bad_host!", "host\n", "ex ample", "ünï.example", "a..b", "-a"])
def test_malformed_names(name: str) -> None:
    with pytest.raises(TargetError):
        check_name(name)


@FAST
@given(st.integers(0, (1 << 118) - 1).map(lambda n: ipaddress.IPv6Address((0xFE80 << 112) | n)))
def test_link_local_needs_its_interface(ip: ipaddress.IPv6Address) -> None:
    with pytest.raises(TargetError, match="link-local address: name its interface"):
        parse_endpoint(f"[{ip}]:22")
    with pytest.raises(TargetError, match="link-local"):
        parse_spec(f"8080:[{ip}]:80")
    assert parse_endpoint(f"[{ip}%eth0]:22").host == f"{ip}%eth0"
    assert str(parse_address(f"{ip}%3")) == f"{ip}%3"


@pytest.mark.parametrize("scope", ["eth0;x", "a b", "x" * 16, ""])
def test_bad_scopes(scope: str) -> None:
    with pytest.raises(TargetError):
        parse_endpoint(f"[fe80::1%{scope}]:22")


# ---- interface names --------------------------------------------------------------------


@FAST
@given(st.from_regex(r"\A[A-Za-z0-9_@-][A-Za-z0-9_.@-]{0,14}\Z", fullmatch=True))
def test_kernel_style_names_are_accepted(name: str) -> None:
    assert check_ifname(name) == name
    assert check_ifname(name[:14] + "*", pattern=True) == name[:14] + "*"


@pytest.mark.parametrize("name", ["", ".", "..", "eth0;drop", "eth0:1", "a/b", "eth 0", "eth0\n", "x" * 16, "wlån0", "eth*"])
def test_bad_interface_names(name: str) -> None:
    with pytest.raises(InputError, match="invalid interface name"):
        check_ifname(name)


def test_patterns_only_where_allowed() -> None:
    assert check_ifname("veth*", pattern=True) == "veth*"
    for bad in ("*", "v*th", "x" * 16 + "*"):
        with pytest.raises(InputError):
            check_ifname(bad, pattern=True)


# ---- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e3", "-1", "+1", "", " ", "1,5", "٣", "１", "0x10", "1_000", "5\n"]
)
def test_numbers_refuse_nan_signs_exponents_and_unicode(text: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_number(text, what="timeout", low=0, high=60, low_open=True, unit="seconds")
    assert "timeout" in str(exc.value) and "60 seconds" in str(exc.value)


@FAST
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=0.001, max_value=60))
def test_numbers_in_range_are_accepted(value: float) -> None:
    text = f"{value:.3f}"
    assert parse_number(text, what="t", low=0, high=60, low_open=True) == pytest.approx(float(text))


def test_number_ranges_and_integers() -> None:
    assert parse_number("0", what="n", low=0, high=5, integer=True) == 0
    for bad in ("0.5", "6", "99999999999999999999999"):
        with pytest.raises(InputError):
            parse_number(bad, what="n", low=0, high=5, integer=True)
    with pytest.raises(InputError, match="above 0"):
        parse_number("0", what="t", low=0, high=5, low_open=True)
    assert math.isfinite(parse_number(".5", what="t", low=0, high=5))


def test_cli_number_types_accept_negative_looking_values_as_values() -> None:
    from portkit.cli.common import Parser, number_arg

    p = Parser(prog="t")
    p.add_argument("-4", action="store_true")  # with such an option argparse takes "-1" for one
    p.add_argument("--confirm", type=number_arg("confirmation timeout", 1, 86400, unit="seconds"))
    assert p.parse_args(["--confirm", "5"]).confirm == 5
    for bad in ("-1", "-0.5", "-nan", "-inf", "nan", "0", "100000"):
        with pytest.raises(SystemExit):
            p.parse_args(["--confirm", bad])


def test_cli_refusal_names_value_and_range(capsys: pytest.CaptureFixture[str]) -> None:
    from portkit.cli.common import Parser, number_arg

    p = Parser(prog="t")
    p.add_argument("--confirm", type=number_arg("confirmation timeout", 1, 86400, unit="seconds"))
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["--confirm", "-1"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert "'-1'" in err and "1-86400 seconds" in err and "expected one argument" not in err


# ---- forward specs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    ["8080:10.0.0.2:80\n", "8080:10.0.0.2:80\r", "8080:10.0.0.2:\x0080", "٨٠:10.0.0.2:80", "８０:10.0.0.2:80", "8080:1.2.3:80"],
)
def test_bad_forward_specs(spec: str) -> None:
    with pytest.raises(InputError):
        parse_spec(spec, default_bind="0.0.0.0")


def test_explicit_ipv4_bind_with_an_ipv6_target_is_kept_and_refused_in_the_kernel() -> None:
    from portkit.engine.forwardnft import kernel_forward
    from portkit.ops.forward_kernel import _fit_family

    text = "0.0.0.0:8080:[fd00::2]:80"
    assert spec_has_bind(text) and not spec_has_bind("8080:[fd00::2]:80")
    kept = _fit_family(parse_spec(text, default_bind="0.0.0.0"), text)
    assert kept.bind == "0.0.0.0"
    with pytest.raises(InputError, match="NAT cannot change the address family"):
        kernel_forward(kept, local=False, target_is_local=False, netns=None)
    fitted = _fit_family(parse_spec("8080:[fd00::2]:80", default_bind="0.0.0.0"), "8080:[fd00::2]:80")
    assert fitted.bind == "::"


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e9", "٣"])
@pytest.mark.parametrize("key", ["connect_timeout", "udp_idle_timeout", "drain", "udp_max_sessions"])
def test_forward_config_numbers(key: str, value: str) -> None:
    with pytest.raises(FileFormatError, match=key):
        parse_config(f"forwards: ['8080:80']\n{key}: '{value}'\n", "f.yaml")


# ---- YAML limits ------------------------------------------------------------------------


def _bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[" * 5000 + "]" * 5000, f"nested deeper than {MAX_DEPTH}"),
        ("a: " + "{b: " * 3000 + "c" + "}" * 3000, f"nested deeper than {MAX_DEPTH}"),
        ("a: &a [*a]\n", "recursive"),
        ("a: &a {b: *a}\n", "recursive"),
        (_bomb(), f"more than {MAX_NODES} nodes"),
    ],
)
def test_yaml_limits(text: str, problem: str) -> None:
    for reader in (compose, load):
        with pytest.raises(FileFormatError, match=problem):
            reader(text, "x.yaml")
    with pytest.raises(FileFormatError, match=problem):
        load_policy(text, path="p.yaml")
    with pytest.raises(FileFormatError, match=problem):
        parse_config(text, "f.yaml")


def test_yaml_limits_in_lab_scenarios() -> None:
    from portkit.lab.scenario import load as load_scenario

    for text in ("hosts: &a [*a]\nlinks: []\n", _bomb() + "hosts: {}\n", "hosts:\n" + "[" * 5000):
        with pytest.raises(FileFormatError):
            load_scenario(text)


def test_deep_alias_chains_count_expanded_depth() -> None:
    # each anchor is 40 deep; an alias of it placed 40 deep is 80 deep once expanded
    inner = "[" * 40 + "x" + "]" * 40
    text = f"a: &a {inner}\nb: " + "[" * 40 + "*a" + "]" * 40 + "\n"
    with pytest.raises(FileFormatError, match="once aliases are expanded"):
        compose(text, "x.yaml")


def test_ordinary_yaml_still_loads() -> None:
    assert load("a: [1, {b: c}]\nd: &x 5\ne: *x\n", "x.yaml") == {"a": [1, {"b": "c"}], "d": 5, "e": 5}


@pytest.mark.parametrize("value", ["null", "~", "", "'٨٠'", "'²'", "'1" + "0" * 5000 + "'"])
def test_policy_port_must_be_a_port(value: str) -> None:
    services = {("null", "tcp"): 9, ("discard", "tcp"): 9}
    with pytest.raises(FileFormatError, match="bad port"):
        load_policy(f"rules:\n  - {{action: allow, proto: tcp, port: {value}}}\n", path="p.yaml", services=services)


def test_policy_interface_follows_the_kernel_rules() -> None:
    for bad in ("'eth0;drop'", "'eth0:1'", "'a b'"):
        with pytest.raises(FileFormatError, match="interface name"):
            load_policy(f"rules:\n  - {{action: allow, interface: {bad}}}\n", path="p.yaml")
    pol = load_policy("rules:\n  - {action: allow, interface: 'veth*'}\n", path="p.yaml")
    assert pol.rules[0].interface == "veth*"


@pytest.mark.parametrize("value", ["1" * 5000, "2001-13-45"])
def test_values_the_yaml_constructor_cannot_build_are_file_errors(value: str) -> None:
    from portkit.lab.scenario import load as load_scenario

    with pytest.raises(FileFormatError, match="bad value"):
        load_scenario(f"hosts:\n  a: {{x: {value}}}\nlinks: []\n")
    with pytest.raises(FileFormatError, match="bad value"):
        load(f"x: {value}\n", "x.yaml")
