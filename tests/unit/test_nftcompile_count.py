"""engine/nftcompile: the compiler counts the rules it writes (``fw apply`` reports that
count; it used to count tab-indented lines of the script)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from portkit.engine.nftcompile import compile_policy, compile_ruleset
from portkit.model.firewall import Policy, PolicyRule, PortRange
from tests.fwgen import Universe, random_policy

U = Universe(
    clients4=("10.1.0.2", "192.0.2.7"), clients6=("fd01::2", "2001:db8::7"), servers4=("10.1.0.1",),
    servers6=("fd01::1",), ports=(22, 53, 8080), ifaces=("eth0", "wg0"),
)  # fmt: skip


def text_count(script: str) -> int:
    return sum(1 for ln in script.splitlines() if ln.startswith("\t\t") and not ln.startswith("\t\ttype "))


def test_defaults() -> None:
    c = compile_ruleset(Policy())
    # in: established, invalid, lo; out: established, lo; essential icmp and icmpv6 on both
    assert c.rules == 3 + 2 + 2 * 2 == text_count(c.script)
    assert c.script == compile_policy(Policy())


def test_a_rule_with_both_families_and_reject_counts_each_nft_rule() -> None:
    rule = PolicyRule("in", "reject", "any", (PortRange(25, 25),), ("25",), ("10.0.0.0/8", "2001:db8::/32"), (), None, "any", False, None)
    c = compile_ruleset(Policy(rules=(rule,), default_in="reject"))
    assert c.rules == text_count(c.script)
    assert c.rules == compile_ruleset(Policy(default_in="reject")).rules + 4  # 2 families x (tcp reset + icmpx)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_the_count_is_the_number_of_rule_lines(seed: int) -> None:
    c = compile_ruleset(random_policy(random.Random(seed), U))
    assert c.rules == text_count(c.script)
