"""Property: policy -> compiled nft (loaded by the real nft, listed as JSON) -> evaluator
gives the policy's own verdict, for random policies and packets.

nft itself parses the compiled script, so this also proves the compiler writes valid nft.
The ruleset is only loaded (no traffic) in a throwaway namespace.
"""

from __future__ import annotations

import json
import random
import secrets
import subprocess
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portkit.engine.nftcompile import compile_policy
from portkit.engine.nfteval import Evaluator
from portkit.engine.policy import evaluate_policy
from portkit.parse.nftjson import has_ambiguous, hidden_nfproto, parse_ruleset, resolve_hidden
from tests.conftest import needs_tool
from tests.fwgen import Universe, random_packet, random_policy

pytestmark = [pytest.mark.root, needs_tool("nft")]

U = Universe(
    clients4=("10.1.0.2", "10.1.0.3", "10.1.1.9", "192.0.2.7"),
    clients6=("fd01::2", "fd01::3", "2001:db8::7"),
    servers4=("10.1.0.1", "10.1.0.100"),
    servers6=("fd01::1", "fd01::100"),
    ports=(22, 53, 80, 443, 8000, 8080),
    ifaces=("eth0", "wg0"),
)


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    name = f"pk-fw-hyp-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _nft(ns: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(["ip", "netns", "exec", ns, "nft", *args], input=stdin, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_compiled_policy_evaluates_like_the_policy(netns: str, seed: int) -> None:
    rng = random.Random(seed)
    policy = random_policy(rng, U)
    script = compile_policy(policy)
    _nft(netns, "-f", "-", stdin=script)
    rs = parse_ruleset(json.loads(_nft(netns, "-j", "list", "ruleset")))
    if has_ambiguous(rs):
        rs = resolve_hidden(rs, hidden_nfproto(_nft(netns, "--debug=netlink", "list", "ruleset")))
    ev = Evaluator(rs)
    for _ in range(40):
        pkt = random_packet(rng, U, rng.choice(["in", "out"]), protos=("tcp", "udp", "icmp"))
        want = evaluate_policy(policy, pkt)
        got = ev.evaluate(pkt)
        assert got.verdict == want.verdict, (
            f"{pkt}\npolicy says {want.verdict} ({want.decided_by}), nft says {got.verdict} "
            f"({got.decided_by}; {got.reason})\n{script}"
        )
