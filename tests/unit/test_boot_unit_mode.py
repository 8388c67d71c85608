"""The boot unit runs portkit as root at every boot, so nobody but root may edit it: it is
written 0644 whatever the umask (``umask 000`` once gave 0666 files)."""

from __future__ import annotations

import os
import pathlib
import stat

import pytest

from portkit.errors import PrivilegeError


def test_boot_unit_is_0644_under_umask_000(tmp_path: pathlib.Path) -> None:
    from portkit.ops.firewall_apply import enable_boot

    pol = tmp_path / "p.yaml"
    pol.write_text("rules: []\n")
    pol.chmod(0o600)
    old = os.umask(0)
    try:
        unit = enable_boot(str(pol), unit_dir=str(tmp_path / "units"), systemctl=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(unit).st_mode) == 0o644


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_boot_unit_in_a_directory_not_ours_is_exit_3(tmp_path: pathlib.Path) -> None:
    from portkit.ops.firewall_apply import enable_boot

    pol = tmp_path / "p.yaml"
    pol.write_text("rules: []\n")
    pol.chmod(0o600)
    units = tmp_path / "units"
    units.mkdir(mode=0o500)
    with pytest.raises(PrivilegeError, match=r"^cannot write .*portkit-firewall\.service: Permission denied \(run as root\)$"):
        enable_boot(str(pol), unit_dir=str(units), systemctl=False)
