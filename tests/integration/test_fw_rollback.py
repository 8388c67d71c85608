"""backends.rollback: the generic confirm/rollback timer (also used by kernel forwards)."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest

from portkit.backends import rollback
from tests.conftest import needs_tool, rollback_timers, wait_until

pytestmark = [pytest.mark.root, needs_tool("nft")]


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"pk-fw-rb-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        rollback.confirm(f"t-{name}")
        rollback.clear_result(f"t-{name}")
        subprocess.run(["ip", "netns", "del", name], check=False)


def tables(ns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"], capture_output=True, text=True, check=True).stdout


def test_fires_restores_and_keeps_the_oldest_script(ns: str) -> None:
    name = f"t-{ns}"
    subprocess.run(["ip", "netns", "exec", ns, "nft", "add", "table", "inet", "x"], check=True)
    st = rollback.arm(name, "add table inet restored_first\n", 30, netns=ns)
    assert st.armed and st.netns == ns and st.seconds_left is not None and st.seconds_left > 20
    # re-arming keeps the older (known good) restore script and restarts the clock
    rollback.arm(name, "add table inet restored_second\n", 1, netns=ns)
    wait_until(lambda: not rollback.status(name).armed, timeout=10)
    assert "restored_first" in tables(ns) and "restored_second" not in tables(ns)
    assert rollback.status(name).last_result == "rolled back"


def test_confirm_disarms(ns: str) -> None:
    name = f"t-{ns}"
    timer = rollback.arm(name, "add table inet should_not_appear\n", 1, netns=ns).pid
    assert timer is not None
    assert rollback.confirm(name)
    assert not rollback.confirm(name)
    wait_until(lambda: timer not in rollback_timers(), timeout=20)  # gone: nothing can fire
    assert "should_not_appear" not in tables(ns)
    assert not rollback.status(name).armed


def test_bad_input() -> None:
    from portkit.errors import InputError

    with pytest.raises(InputError):
        rollback.arm("bad name/with slash", "", 5)
    with pytest.raises(InputError):
        rollback.arm("ok", "", 0)
