"""CLI fuzz test: malformed invocations of every command and option (issue 12).

Every command line here is malformed on purpose. Each must exit 2 (bad input) or 3 (missing
privilege) with exactly one line on stderr, no traceback and no "internal error", within
20 s, and change nothing: no file under /etc, /run or /var (the state directories, units,
/etc/netns) and no nftables rule. The invocations run in a sealed-off worker
(tests/cli/fuzz_worker.py): a private ``pk-`` network namespace, an overlay over /etc, /run
and /var that catches every write, and a PID namespace, so nothing reaches the host.

The commands and options come from walking ``portkit.cli.main.build_parser()``, so a new
option is fuzzed as soon as it exists. Values come from a list of known-bad kinds (Unicode
digits, 20- and 5,000-digit numbers, NaN/inf/-1, bad CIDRs, brackets, control characters,
files that are FIFOs, symlink loops, directories, YAML bombs, deep nesting, /proc/self/mem,
over-long names) and from random mixtures of their fragments. The hypothesis part runs a
fixed, derandomized profile (``PK_FUZZ_EXAMPLES`` raises the count by hand) and reports
every distinct failure at the end instead of stopping at the first. The concrete cases of
issue 12 ("What broke", items 7-9) are kept as explicit parametrized cases.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from portkit.cli.main import build_parser
from tests.cli.fuzz_worker import FuzzWorker, Outcome

EXAMPLES = int(os.environ.get("PK_FUZZ_EXAMPLES", "2000"))  # about 35 s here (13 ms each), within the ~60 s CI budget
TIMEOUT = 20.0

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a private network namespace and mounts)"),
    pytest.mark.skipif(
        shutil.which("ip") is None, reason="needs the ip command (scripts/setup --dev installs it)"
    ),
]


# -- the malformed files ------------------------------------------------------------------
def _make_files(d: str) -> dict[str, str]:
    """Bad files (and paths) in ``d``, by name; all readable by anyone."""
    files: dict[str, str] = {}

    def write(name: str, data: str | bytes) -> str:
        path = os.path.join(d, name)
        with open(path, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        files[name.split(".")[0]] = path
        return path

    os.mkfifo(os.path.join(d, "fifo.yaml"))
    files["fifo"] = os.path.join(d, "fifo.yaml")
    os.symlink("loop2.yaml", os.path.join(d, "loop.yaml"))
    os.symlink("loop.yaml", os.path.join(d, "loop2.yaml"))
    files["loop"] = os.path.join(d, "loop.yaml")
    os.mkdir(os.path.join(d, "dir.yaml"))
    files["dir"] = os.path.join(d, "dir.yaml")
    write("plain.yaml", "default: {in: deny, out: allow}\n")
    write(
        "policy.yaml", "default: {in: deny, out: allow}\nrules:\n  - {action: allow, proto: tcp, port: 22}\n"
    )
    write("deep.yaml", "[" * 5000)
    write("deepmap.yaml", "{a: " * 5000)
    lol = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i, name in enumerate("bcdefghij"):
        prev = "abcdefghij"[i]
        lol.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    write("bomb.yaml", "\n".join(lol) + "\nhosts: *j\n")
    write("recursive.yaml", "hosts: &a [*a]\nname: &b {x: *b}\n")
    write("binary.yaml", b"\xff\xfe\x00\x01rules: [\x80\x81]\n")
    write(
        "portnull.yaml",
        "default: {in: deny, out: allow}\nrules:\n  - {action: allow, proto: tcp, port: null}\n",
    )
    write("tags.yaml", "rules: !!python/object/apply:os.system [true]\n")
    big = os.path.join(d, "big.yaml")
    with open(big, "wb") as f:
        f.truncate(5 * 1024 * 1024)
    files["big"] = big
    files["longname"] = os.path.join(d, "a" * 300 + ".yaml")
    files["longpath"] = "/" + "/".join(["d" * 200] * 30) + ".yaml"
    files["missing"] = os.path.join(d, "missing.yaml")
    files["newline"] = os.path.join(
        d, "inj\ntable inet evil { chain c { type filter hook input priority -300; policy drop; }; }\n#.yaml"
    )
    files["under_file"] = os.path.join(d, "plain.yaml", "x")
    files["proc_mem"] = "/proc/self/mem"
    files["dev_zero"] = "/dev/zero"
    return files


# -- the parser tree ----------------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """One place a value goes: a positional, or an option's value."""

    flag: str | None  # None: positional
    nargs: str | int | None
    choices: tuple[str, ...] | None
    dest: str
    takes_value: bool


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    positionals: tuple[Slot, ...]
    optionals: tuple[Slot, ...]


#: Options whose value is free text (a comment, a process name to filter on): any text is
#: valid there, so they get a harmless value and never count as the malformed part.
FREE_TEXT = {"comment", "process", "name"}
SKIP_ACTIONS = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def commands(parser: argparse.ArgumentParser | None = None, path: tuple[str, ...] = ()) -> list[Command]:
    """Every (sub)command of the CLI with its positionals and options, from argparse itself."""
    parser = parser or build_parser()
    found: list[Command] = []
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    pos: list[Slot] = []
    opt: list[Slot] = []
    for a in parser._actions:
        if isinstance(a, SKIP_ACTIONS):
            continue
        choices = tuple(str(c) for c in a.choices) if a.choices else None
        takes = a.nargs != 0
        slot = Slot(a.option_strings[0] if a.option_strings else None, a.nargs, choices, a.dest, takes)
        (opt if a.option_strings else pos).append(slot)
    if path and not subs:
        found.append(Command(path, tuple(pos), tuple(opt)))
    for s in subs:
        for name, sub in s.choices.items():
            found.extend(commands(sub, (*path, name)))
    return found


COMMANDS = commands()


# -- bad values ---------------------------------------------------------------------------
BAD_WORDS = [
    "²", "٨٠", "８０", "੮੦", "1" * 20, "9" * 25, "7" * 4301, "8" * 5000,
    "nan", "NaN", "inf", "-inf", "-1", "0", "65536", "99999", "1e3", "0x50", "080x", " 80", "80 ",
    "&x 80", "!!str 80", "80, 90", "[80]", "{a: 1}", "null", "~", "", " ", "80-", "-", "1-2-3", "5-1",
    "1.2.3", "0x7f.1", "0177.0.0.1", "256.1.1.1", "1.2.3.4/33", "10.0.0.0/-1", "::/129", "1.2.3.4/a",
    "[::1", "::1]", "[]", "[[[", "]]]", "[fe80::1]:22", "fe80::1", "fe80::1%", "::ffff:1.2.3.4/200",
    "127.0.0.1:²", "127.0.0.1:99999999999999999999", "127.0.0.1:", ":80", "a\nb", "80\n", "\x1b[2J",
    "\x01", "\t", "a" * 5000, "x" * 300 + ".invalid", "٨٠:10.0.0.2:80", "0.0.0.0:8080:[fd00::2]:80",
    "8080:[fd00::2", "eth0;drop", "$(reboot)", "`id`", "../../etc/passwd", "%s%n", "\u202e80", "\ufeff80",
]  # fmt: skip
FRAGMENTS = [
    "²", "٨", "８", "[", "]", ":", "/", "\n", "\x1b", "9" * 25, "nan", "-", ".", "%", "&", "*", "!!",
    "{", "}", ",", " ", "::", "fe80", "1", "80", "127.0.0.1", "0x", "\u0660", "e9", "inf",
]  # fmt: skip
FILE_KEYS = [
    "fifo", "loop", "dir", "deep", "deepmap", "bomb", "recursive", "binary", "big", "longname",
    "longpath", "missing", "newline", "under_file", "proc_mem", "dev_zero", "tags",
]  # fmt: skip


def bad_value(files: dict[str, str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(BAD_WORDS),
        st.sampled_from([files[k] for k in FILE_KEYS]),
        st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=6).map("".join),
    )


@st.composite
def invocation(draw: st.DrawFn, files: dict[str, str]) -> list[str]:
    """A malformed command line: every value slot that can be wrong is wrong."""
    cmd = draw(st.sampled_from(COMMANDS))
    bad = bad_value(files)
    argv = list(cmd.path)
    wrong = 0

    def value(slot: Slot) -> str:
        nonlocal wrong
        if slot.choices:
            return draw(st.sampled_from(slot.choices))
        if slot.dest in FREE_TEXT:
            return "x"
        wrong += 1
        return draw(bad)

    opts = draw(st.lists(st.sampled_from(cmd.optionals), unique=True, max_size=4)) if cmd.optionals else []
    tail: list[str] = []
    for slot in opts:
        tail.append(slot.flag or "")
        if slot.takes_value:
            tail.append(value(slot))
    for slot in cmd.positionals:
        if slot.nargs == argparse.REMAINDER:
            argv += ["--", "true"]
            continue
        n = draw(st.integers(1, 2)) if slot.nargs in ("+", "*") else 1
        argv += [value(slot) for _ in range(n)]
    if wrong == 0:  # nothing wrong to say yet: one option of the command gets a bad value
        valued = [s for s in cmd.optionals if s.takes_value and not s.choices and s.dest not in FREE_TEXT]
        if not valued:
            tail += ["--no-such-option-" + draw(st.sampled_from(["x", "²", "\n"]))]
        else:
            slot = draw(st.sampled_from(valued))
            tail += [slot.flag or "", draw(bad)]
    # Options after the positionals, so a value such as "-1" cannot swallow a positional.
    return argv + tail if draw(st.booleans()) else argv[: len(cmd.path)] + tail + argv[len(cmd.path) :]


# -- judging ------------------------------------------------------------------------------
def problems(o: Outcome) -> list[str]:
    """What is wrong with one outcome (empty: it behaved)."""
    found: list[str] = []
    if o.code is None:
        return [f"hang: still running after {TIMEOUT:g} s"]
    lines = o.stderr.strip("\n").split("\n") if o.stderr.strip() else []
    if o.code not in (2, 3):
        found.append(f"exit {o.code}")
    if "Traceback" in o.stderr:
        found.append("traceback")
    if "internal error" in o.stderr:
        found.append("internal error")
    if len(lines) != 1:
        found.append(f"{len(lines)} lines on stderr")
    found += [f"changed {c}" for c in o.changed]
    return found


def cause(o: Outcome, found: list[str]) -> str:
    """A key that groups failures with one cause: the command, the problem kinds, and the
    message with values and numbers blotted out."""
    words = max((c.path for c in COMMANDS if tuple(o.argv[: len(c.path)]) == c.path), key=len, default=())
    first = (o.stderr.strip().splitlines() or [""])[0]
    first = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", first)
    first = re.sub(r"/[^\s:,)]+", "PATH", first)
    first = re.sub(r"\d+", "N", first)[:110]
    kinds = sorted({re.sub(r"^(changed \S+).*", r"\1", f) for f in found})
    return f"{' '.join(words)}: {', '.join(kinds)}: {first}"


# -- the sealed world ---------------------------------------------------------------------
@dataclass
class World:
    worker: FuzzWorker
    files: dict[str, str]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    ns = f"pk-fuzz-{secrets.token_hex(3)}"
    scratch = tempfile.mkdtemp(prefix="pk-fuzz-files-")
    layers = tempfile.mkdtemp(prefix="pk-fuzz-layers-")
    os.chmod(scratch, 0o755)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    worker = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        files = _make_files(scratch)
        try:
            worker = FuzzWorker(f"/run/netns/{ns}", scratch, layers, timeout=TIMEOUT)
        except RuntimeError as exc:
            pytest.skip(f"cannot seal off a fuzz worker here: {exc}")
        yield World(worker, files)
    finally:
        if worker is not None:
            worker.close()
        subprocess.run(["ip", "netns", "del", ns], check=False)
        os.rmdir(layers)
        shutil.rmtree(scratch)


def test_parser_walk_finds_every_command() -> None:
    paths = {" ".join(c.path) for c in COMMANDS}
    assert {"who", "check", "scan", "fw allow", "fw apply", "forward", "lab up", "lab exec", "trace"} <= paths
    forward = next(c for c in COMMANDS if c.path == ("forward",))
    assert {"--pipe-size", "--connect-timeout", "--stats"} <= {s.flag for s in forward.optionals}


def test_the_worker_is_sealed_off(world: World) -> None:
    """The harness itself: writes land in the overlay, rules in the private namespace, a hang is cut."""
    host_policy = "/etc/portkit/policy.yaml"
    before = os.path.exists(host_policy)
    wrote = world.worker.run(["fw", "allow", "22", "--comment", "fuzz harness"])
    assert wrote.code == 0, wrote
    assert any(c.startswith("/etc/portkit/policy.yaml: ") for c in wrote.changed), wrote.changed
    assert os.path.exists(host_policy) == before  # the host's /etc is untouched
    dnat = world.worker.run(["forward", "--kernel", "18080:192.0.2.7:80"])
    assert dnat.code == 0, dnat
    assert any(c.startswith("nftables ruleset:") for c in dnat.changed), dnat.changed
    assert world.worker.run(["ls", "--json"]).changed == []  # the worker flushed it again
    hang = world.worker.run(["forward", "127.0.0.1:18081:127.0.0.1:9"], timeout=1.0)
    assert hang.code is None and problems(hang) == ["hang: still running after 20 s"]
    assert world.worker.run(["who", "18081", "--json"]).code == 1  # the hung forwarder is gone


# -- the concrete cases of issue 12 -------------------------------------------------------
CONCRETE: list[tuple[str, list[str]]] = [
    # 7: bad input reached "internal error", exit 4, or hung
    ("who-superscript-digit", ["who", "²"]),
    ("check-superscript-digit", ["check", "127.0.0.1:²"]),
    ("who-4301-digits", ["who", "7" * 4301]),
    ("check-5000-digits", ["check", "127.0.0.1:" + "8" * 5000]),
    ("policy-5000-deep", ["fw", "compile", "--policy", "{deep}"]),
    ("policy-5000-deep-map", ["fw", "compile", "--policy", "{deepmap}"]),
    ("lab-recursive-alias", ["lab", "up", "{recursive}"]),
    ("policy-symlink-loop", ["fw", "compile", "--policy", "{loop}"]),
    ("policy-below-a-file", ["fw", "compile", "--policy", "{under_file}"]),
    ("policy-over-long-name", ["fw", "compile", "--policy", "{longname}"]),
    ("policy-over-long-path", ["fw", "compile", "--policy", "{longpath}"]),
    ("policy-proc-self-mem", ["fw", "compile", "--policy", "/proc/self/mem"]),
    ("policy-directory", ["fw", "compile", "--policy", "{dir}"]),
    ("policy-fifo", ["fw", "compile", "--policy", "{fifo}"]),
    ("lab-fifo", ["lab", "up", "{fifo}"]),
    ("forward-config-fifo", ["forward", "--config", "{fifo}", "--check"]),
    ("lab-alias-bomb", ["lab", "up", "{bomb}"]),
    (
        "forward-pipe-size-20-digits",
        ["forward", "--pipe-size", "99999999999999999999", "--check", "8080:127.0.0.1:80"],
    ),
    # 8: bad input accepted
    ("fw-allow-empty", ["fw", "allow", ""]),
    ("fw-allow-space", ["fw", "allow", " "]),
    ("forward-kernel-arabic-indic-port", ["forward", "--kernel", "٨٠:10.0.0.2:80"]),
    ("forward-kernel-full-width-port", ["forward", "--kernel", "８０:10.0.0.2:80"]),
    ("fw-allow-yaml-anchor", ["fw", "allow", "&x 80"]),
    ("fw-allow-yaml-tag", ["fw", "allow", "!!str 80"]),
    ("fw-allow-yaml-list", ["fw", "allow", "80, 90"]),
    ("policy-port-null", ["fw", "compile", "--policy", "{portnull}"]),
    ("scan-three-part-ipv4", ["scan", "1.2.3"]),
    ("scan-hex-ipv4", ["scan", "0x7f.1"]),
    ("scan-rate-nan", ["scan", "127.0.0.1", "-p", "22", "--rate", "nan"]),
    ("forward-connect-timeout-nan", ["forward", "--check", "--connect-timeout", "nan", "8080:127.0.0.1:80"]),
    ("forward-udp-idle-nan", ["forward", "--check", "--udp-idle", "nan", "8080:127.0.0.1:80"]),
    ("forward-drain-nan", ["forward", "--check", "--drain", "nan", "8080:127.0.0.1:80"]),
    ("forward-stats-nan", ["forward", "--check", "--stats", "nan", "8080:127.0.0.1:80"]),
    (
        "fw-check-iif-injection",
        ["fw", "check", "--src", "192.0.2.1", "--dst", "127.0.0.1", "--dport", "22", "--iif", "eth0;drop"],
    ),
    (
        "fw-check-icmp-with-dport",
        ["fw", "check", "--proto", "icmp", "--src", "192.0.2.1", "--dst", "127.0.0.1", "--dport", "22"],
    ),
    ("who-signal-empty", ["who", "80", "--kill", "--yes", "--signal", ""]),
    ("forward-kernel-mixed-families", ["forward", "--kernel", "0.0.0.0:8080:[fd00::2]:80"]),
    ("fw-apply-confirm-0", ["fw", "apply", "--policy", "{policy}", "--force", "--confirm", "0"]),
    ("fw-apply-confirm-minus-1", ["fw", "apply", "--policy", "{policy}", "--force", "--confirm", "-1"]),
    ("fw-apply-confirm-nan", ["fw", "apply", "--policy", "{policy}", "--force", "--confirm", "nan"]),
    ("fw-apply-confirm-100000", ["fw", "apply", "--policy", "{policy}", "--force", "--confirm", "100000"]),
    # 9: exit statuses
    ("trace-link-local-without-scope", ["trace", "[fe80::1]:22"]),
    ("why-link-local-without-scope", ["why", "[fe80::1]:22"]),
    ("check-link-local-without-scope", ["check", "[fe80::1]:22"]),
]

def _fill(argv: list[str], files: dict[str, str]) -> list[str]:
    return [re.sub(r"\{(\w+)\}", lambda m: files[m.group(1)], a) for a in argv]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(argv, id=name)
        for name, argv in CONCRETE
    ],
)
def test_concrete_case_from_issue_12(world: World, argv: list[str]) -> None:
    o = world.worker.run(_fill(argv, world.files))
    assert problems(o) == [], f"{o.argv!r}: {problems(o)}; stderr={o.stderr[:300]!r}"


# -- the fuzz -----------------------------------------------------------------------------
def test_fuzz_every_command_and_option(world: World) -> None:
    failures: dict[str, tuple[list[str], str]] = {}
    runs: list[float] = []
    # A file that made one command hang (a FIFO, an alias bomb) is a cause found: later
    # examples that use it again are skipped, so one known hang costs 20 s once, not each time.
    hung: set[str] = set()
    files = set(world.files.values())

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(invocation(world.files))
    def one(argv: list[str]) -> None:
        assume(not hung.intersection(argv))
        o = world.worker.run(argv)
        runs.append(o.seconds)
        found = problems(o)
        if o.code is None:
            hung.update(files.intersection(argv))
        if found:
            failures.setdefault(cause(o, found), (argv, o.stderr.strip()[:160]))

    one()
    report = "\n".join(
        f"- {key}\n    e.g. {argv!r:.220}\n    stderr: {err!r}" for key, (argv, err) in sorted(failures.items())
    )
    assert not failures, (
        f"{len(failures)} distinct failures in {len(runs)} invocations "
        f"({sum(runs) / max(1, len(runs)) * 1000:.0f} ms each):\n{report}"
    )
