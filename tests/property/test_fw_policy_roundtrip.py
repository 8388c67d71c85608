"""Property: a policy written by ``fw allow/insert/delete`` (dump_policy) reads back equal,
and its compiled script is deterministic. Pure: no nft, no root."""

from __future__ import annotations

import dataclasses
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from portkit.engine.nftcompile import compile_policy
from portkit.parse.policy_yaml import dump_policy, load_policy
from tests.fwgen import Universe, random_policy

U = Universe(("10.1.0.2", "192.0.2.7"), ("fd01::2", "2001:db8::7"), ("10.1.0.1",), ("fd01::1",), (22, 53, 8080), ("eth0",))


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_dump_then_load_is_identity(seed: int) -> None:
    policy = random_policy(random.Random(seed), U)
    again = load_policy(dump_policy(policy), path="p.yaml")
    strip = tuple(dataclasses.replace(r, line=None) for r in again.rules)
    assert dataclasses.replace(again, rules=strip) == policy
    assert compile_policy(policy) == compile_policy(again)
