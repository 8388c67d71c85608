"""A lab record that names what lab NAME could not have made is refused, and nothing is deleted
(issue 12: `"namespaces": ["../apt/../../tmp/victim"]` made root's `lab down` delete it)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from portkit.lab.state import record_problem

PLANTED = [
    {"namespaces": ["../apt/../../tmp/victim"]},
    {"namespaces": ["pk-x-a/../../victim"]},
    {"namespaces": ["pk-other-a"]},
    {"namespaces": "pk-x-a"},
    {"namespaces": [], "hosts": {"a": "/tmp/victim"}},
    {"namespaces": [], "runners": {"a": {"pid": 1}}},
    {"namespaces": [], "runners": {"a": {"pid": "12"}}},
    [],
]


@pytest.mark.parametrize("record", PLANTED)
def test_records_naming_foreign_things_are_refused(record: object) -> None:
    assert record_problem("x", record) is not None


def test_a_record_portkit_writes_passes() -> None:
    rec = {"namespaces": ["pk-x-a", "pk-x.lan"], "hosts": {"a": "pk-x-a"}, "runners": {"a": {"pid": 4242, "starttime": 1}}}
    assert record_problem("x", rec) is None


@pytest.mark.root
@pytest.mark.root
@pytest.mark.parametrize("via", ["plain", "lab-prefixed"])
def test_lab_down_refuses_a_planted_record_and_deletes_nothing(tmp_path: pathlib.Path, via: str) -> None:
    labs = tmp_path / "labs"
    labs.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    climb = os.path.relpath(victim, "/etc/netns")  # what /etc/netns/<ns> would resolve to
    # /run/apt does not exist, so the old code saw no namespace and went straight to rmtree
    ns = f"../apt/../{climb}" if via == "plain" else f"pk-x-a/../apt/../{climb}"
    (labs / "x.json").write_text(json.dumps({"name": "x", "status": "up", "namespaces": [ns], "hosts": {}}))
    env = {**os.environ, "PORTKIT_LAB_STATE_DIR": str(labs)}
    r = subprocess.run([sys.executable, "-m", "portkit", "lab", "down", "x"], env=env, capture_output=True, text=True,
                       timeout=60, check=False)  # fmt: skip
    assert r.returncode == 4, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("portkit: refusing ") or "refusing " in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert (victim / "keep").exists() and (labs / "x.json").exists()
