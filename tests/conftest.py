"""Shared test configuration.

Markers: ``root`` (needs root: namespaces, nftables, raw sockets) and ``slow``. A test
marked ``root`` skips with a stated reason when not run as root, so ``pytest -m "not root"``
runs everything that works unprivileged. Tests that need a system tool skip with a stated
reason instead of failing (``needs_tool``). :mod:`tests.hostguard` fails the session when
the host's ruleset, routes or /etc/systemd/system changed.

Helpers every test file shares:

- ``run_cli(*args, ...) -> CliResult`` runs ``python -m portkit`` in a subprocess (the
  ``cli`` fixture hands out the same function);
- ``wait_until(predicate, timeout, interval)`` polls until a condition holds or a deadline
  passes, instead of sleeping a fixed time;
- ``--update-golden`` rewrites the golden files under tests/golden/.

The hypothesis profile ``portkit`` (loaded here) has no per-example deadline and a fixed
derandomized order, so CI runs the same examples each time. The lab fixtures (``lab``,
...) come from :mod:`portkit.lab.pytest_plugin`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import pytest
from hypothesis import settings

pytest_plugins = ["portkit.lab.pytest_plugin", "tests.hostguard"]

IS_ROOT = os.geteuid() == 0
ROOT_REASON = "needs root (network namespaces, nftables, raw sockets)"

settings.register_profile("portkit", deadline=None, derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "portkit"))


def needs_tool(name: str) -> pytest.MarkDecorator:
    """Skip unless the command ``name`` is installed (scripts/setup --dev installs it as root)."""
    found = shutil.which(name) or any(os.access(f"{d}/{name}", os.X_OK) for d in ("/usr/sbin", "/sbin"))
    return pytest.mark.skipif(not found, reason=f"needs the {name} command (scripts/setup --dev installs it)")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False, help="rewrite tests/golden/*.txt from the renderers")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason=ROOT_REASON)
    for item in items:
        if item.get_closest_marker("root") is not None:
            item.add_marker(skip)


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


# -- running the command line --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(
    *args: str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    prefix: Sequence[str] = (),
    cwd: str | None = None,
    start_new_session: bool = False,
) -> CliResult:
    """Run ``portkit ARGS`` as a user would (``prefix`` goes in front: setpriv, ip netns exec).

    Standard input is empty unless ``input`` is given, so a command never waits on the
    terminal of the test run (``start_new_session`` also takes away the controlling terminal).
    """
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "portkit", *args],
        input=input, stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout, env=None if env is None else dict(env), cwd=cwd,
        start_new_session=start_new_session, check=False,
    )  # fmt: skip
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def as_user(uid: int = 65534) -> tuple[str, ...]:
    """A ``prefix`` for :func:`run_cli` that drops to ``uid`` (default nobody) and every group."""
    return ("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups")


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """The :func:`run_cli` function, for tests that prefer a fixture to an import."""
    return run_cli


# -- waiting for a condition ---------------------------------------------------------

PollResult = TypeVar("PollResult")


def wait_until(predicate: Callable[[], PollResult], timeout: float = 10.0, interval: float = 0.05) -> PollResult:
    """Poll ``predicate`` until it returns something true and return that value.

    Fails the test (``AssertionError``) when ``timeout`` seconds pass first; the deadline is
    generous on purpose, the poll returns as soon as the condition holds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition {getattr(predicate, '__name__', predicate)!r} not met within {timeout} s")
        time.sleep(interval)


def rollback_timers() -> set[int]:
    """Pids of the live rollback timers (backends/rollback.py's detached processes).

    A test takes this set before and after arming, so it knows its own timer by pid, and
    after a confirm waits until that pid is gone: then nothing can fire any more.
    """
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"portkit.backends.rollback" in argv and b"--run" in argv:
            pids.add(int(entry))
    return pids
