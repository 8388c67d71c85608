"""backends/state.py: directories and files keep their modes whatever the umask, and a state
file someone else could have written or swapped is refused in one line (exit 4)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from portkit.backends import state
from portkit.errors import ExitCode, UntrustedState

NOBODY = 65534


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    base = tmp_path / "run"
    monkeypatch.setenv("PORTKIT_RUN_DIR", str(base))
    monkeypatch.delenv("PORTKIT_LAB_STATE_DIR", raising=False)
    old = os.umask(0)
    try:
        yield base
    finally:
        os.umask(old)


def mode(p: str | Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_paths_follow_the_run_dir(run_dir: Path) -> None:
    assert state.run_dir() == str(run_dir)
    assert state.rollback_dir() == str(run_dir / "rollback")
    assert state.firewall_dir() == str(run_dir / "firewall")
    assert state.cache_dir() == str(run_dir / "cache")
    assert state.forwards_dir() == str(run_dir / "forward")
    assert state.labs_dir() == str(run_dir / "labs")


def test_umask_000_still_gives_the_declared_modes(run_dir: Path) -> None:
    d = state.make_dir(os.path.join(state.rollback_dir(), "firewall-host"), 0o700)
    assert mode(run_dir) == 0o755
    assert mode(state.rollback_dir()) == 0o700
    assert mode(d) == 0o700
    labs = state.make_dir(state.labs_dir(), 0o755)
    assert mode(labs) == 0o755
    private = state.write_file(os.path.join(d, "restore.nft"), "table inet portkit\n")
    public = state.write_json(os.path.join(labs, "x.json"), {"name": "x"}, 0o644)
    assert mode(private) == 0o600
    assert mode(public) == 0o644
    assert state.read_state_json(public) == {"name": "x"}
    assert state.read_state_text(private) == "table inet portkit\n"
    assert not [n for n in os.listdir(d) if n.endswith(".tmp")]  # the temporary file was renamed


def test_write_replaces_atomically_and_a_missing_file_reads_as_none(run_dir: Path) -> None:
    d = state.make_dir(state.forwards_dir(), 0o755)
    p = os.path.join(d, "host.json")
    assert state.read_state_json(p) is None
    state.write_json(p, {"n": 1}, 0o644)
    state.write_json(p, {"n": 2}, 0o644)
    assert state.read_state_json(p) == {"n": 2}


def test_a_mode_wider_than_asked_is_never_written(run_dir: Path) -> None:
    d = state.make_dir(state.firewall_dir(), 0o700)
    p = state.write_file(os.path.join(d, "x"), b"data", 0o666)
    assert mode(p) == 0o644  # group and others never get write


@pytest.mark.parametrize(("bits", "why"), [(0o664, "writable by its group"), (0o646, "writable by others")])
def test_a_planted_writable_file_is_refused(run_dir: Path, bits: int, why: str) -> None:
    labs = state.make_dir(state.labs_dir(), 0o755)
    p = os.path.join(labs, "x.json")
    Path(p).write_text('{"namespaces": ["../../tmp/victim"]}')
    os.chmod(p, bits)
    with pytest.raises(UntrustedState) as exc:
        state.read_state_json(p)
    assert str(exc.value) == f"refusing {p}: {why}"
    assert exc.value.exit_code == ExitCode.REFUSED


def test_a_writable_directory_in_the_chain_is_refused(run_dir: Path) -> None:
    labs = state.make_dir(state.labs_dir(), 0o755)
    p = state.write_json(os.path.join(labs, "x.json"), {}, 0o644)
    os.chmod(labs, 0o777)
    with pytest.raises(UntrustedState, match=f"^refusing {labs}: writable by others$"):
        state.read_state_json(p)
    with pytest.raises(UntrustedState):
        state.make_dir(labs, 0o755)  # an existing directory is checked, not silently reused
    with pytest.raises(UntrustedState):
        state.write_json(p, {}, 0o644)


def test_a_sticky_directory_is_no_excuse_inside_portkits_own(run_dir: Path) -> None:
    labs = state.make_dir(state.labs_dir(), 0o755)
    os.chmod(labs, 0o1777)
    with pytest.raises(UntrustedState, match="writable by others"):
        state.check_trusted(os.path.join(labs, "x.json"))


def test_a_symlink_is_refused(run_dir: Path, tmp_path: Path) -> None:
    d = state.make_dir(os.path.join(state.rollback_dir(), "firewall-host"), 0o700)
    elsewhere = tmp_path / "evil.json"
    elsewhere.write_text('{"pid": 1}')
    os.chmod(elsewhere, 0o600)
    link = os.path.join(d, "meta.json")
    os.symlink(elsewhere, link)
    with pytest.raises(UntrustedState, match=f"^refusing {link}: is a symlink$"):
        state.read_state_json(link)
    # a symlinked directory of portkit's own is refused as well
    os.rename(state.rollback_dir(), str(run_dir / "rollback.real"))
    os.symlink(run_dir / "rollback.real", state.rollback_dir())
    with pytest.raises(UntrustedState, match="is a symlink"):
        state.read_state_json(link)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_file_owned_by_someone_else_is_refused(run_dir: Path) -> None:
    d = state.make_dir(os.path.join(state.rollback_dir(), "firewall-host"), 0o700)
    p = state.write_json(os.path.join(d, "meta.json"), {"pid": 1})
    os.chown(p, NOBODY, NOBODY)
    with pytest.raises(UntrustedState, match=f"^refusing {p}: owned by uid {NOBODY}$"):
        state.read_state_json(p)
    os.chown(p, 0, 0)
    os.chown(d, NOBODY, NOBODY)
    with pytest.raises(UntrustedState, match=f"^refusing {d}: owned by uid {NOBODY}$"):
        state.read_state_json(p)


def test_a_fifo_or_directory_is_not_a_state_file(run_dir: Path) -> None:
    d = state.make_dir(state.firewall_dir(), 0o700)
    fifo = os.path.join(d, "fifo")
    os.mkfifo(fifo, 0o600)
    with pytest.raises(UntrustedState, match="is not a regular file"):
        state.read_state_text(fifo)  # refused at once, never blocks
    with pytest.raises(UntrustedState, match="is not a regular file"):
        state.read_state_text(d)


def test_lock_files_are_private_and_checked(run_dir: Path) -> None:
    d = state.make_dir(state.rollback_dir(), 0o700)
    fd = state.open_lock(os.path.join(d, "x.lock"))
    os.close(fd)
    assert mode(os.path.join(d, "x.lock")) == 0o600
    os.chmod(os.path.join(d, "x.lock"), 0o666)
    with pytest.raises(UntrustedState):
        state.open_lock(os.path.join(d, "x.lock"))
