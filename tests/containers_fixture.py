"""A private Docker daemon inside a ``pk-`` network namespace, for the container tests.

dockerd is started with ``nsenter --net=/run/netns/pk-...`` (``ip netns exec`` remounts
/sys and loses the cgroup mounts), ``--storage-driver vfs`` and its own data root, exec
root, pid file and socket under a temp directory. The image is a busybox root filesystem
(Debian's busybox-static) brought in with ``docker import``: no registry is contacted.
Teardown removes the containers, stops the daemon by its pid, unmounts what it left and
removes the namespace and the directories, also when the test failed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

IMAGE = "pk-busybox:1"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the container tests need root (they run a private dockerd)"
    for tool in ("dockerd", "docker", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"needs the {tool} command (scripts/setup --dev installs docker.io)"
    if not os.path.exists("/bin/busybox") and shutil.which("busybox") is None:
        return "needs busybox-static (scripts/setup --dev installs it)"
    try:
        import docker  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return "needs the docker SDK (pip install portkit[containers])"
    return None


@dataclass
class DockerHost:
    netns: str
    sock: str
    tmp: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.sock}"}

    @property
    def prefix(self) -> tuple[str, ...]:
        """A run_cli prefix that runs portkit where the daemon runs (its network namespace)."""
        return ("nsenter", f"--net=/run/netns/{self.netns}")

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "-H", f"unix://{self.sock}", *args], capture_output=True, text=True,
                              timeout=120, check=check)  # fmt: skip

    def run(self, name: str, *args: str) -> str:
        """``docker run -d --name NAME ARGS`` and the container's id once it runs."""
        got = self.docker("run", "-d", "--name", name, *args)
        return got.stdout.strip()


def _busybox_tar(tmp: str) -> str:
    root = os.path.join(tmp, "rootfs")
    os.makedirs(os.path.join(root, "bin"))
    os.makedirs(os.path.join(root, "www"))
    busybox = "/bin/busybox" if os.path.exists("/bin/busybox") else str(shutil.which("busybox"))
    shutil.copy2(busybox, os.path.join(root, "bin", "busybox"))
    for link in ("sh", "httpd", "nc", "sleep", "cat"):
        os.symlink("busybox", os.path.join(root, "bin", link))
    with open(os.path.join(root, "www", "index.html"), "w") as f:
        f.write("pk\n")
    path = os.path.join(tmp, "rootfs.tar")
    with tarfile.open(path, "w") as t:
        t.add(root, arcname=".")
    return path


def _umount_under(path: str) -> None:
    try:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
    except OSError:
        return
    for mp in sorted((p for p in points if p.startswith(path)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True, check=False)


def _end_shims(tmp: str) -> None:
    """containerd-shim processes of this daemon (their command line names our temp dir)
    outlive it for a moment: wait for them, and end the ones that stay, by pid."""
    deadline = time.monotonic() + 10
    while True:
        left = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        if tmp.encode() in f.read():
                            left.append(int(d))
                except OSError:
                    continue
        if not left:
            return
        if time.monotonic() > deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            return
        time.sleep(0.1)


def start_dockerd(*, userland_proxy: bool = True) -> Iterator[DockerHost]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    netns = "pk-dk-" + secrets.token_hex(4)
    tmp = tempfile.mkdtemp(prefix="pk-docker-", dir="/tmp")
    sock = os.path.join(tmp, "docker.sock")
    proc: subprocess.Popen[bytes] | None = None
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        log = open(os.path.join(tmp, "dockerd.log"), "wb")  # noqa: SIM115 - closed in finally
        try:
            proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{netns}", "dockerd", "--storage-driver", "vfs",
                 "--data-root", os.path.join(tmp, "data"), "--exec-root", os.path.join(tmp, "exec"),
                 "--pidfile", os.path.join(tmp, "dockerd.pid"), "-H", f"unix://{sock}",
                 f"--userland-proxy={'true' if userland_proxy else 'false'}", "--log-level", "warn"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            host = DockerHost(netns, sock, tmp)
            deadline = time.monotonic() + 60
            while host.docker("version", check=False).returncode != 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    with open(os.path.join(tmp, "dockerd.log"), errors="replace") as f:
                        tail = f.read()[-2000:]
                    pytest.fail(f"dockerd did not come up: {tail}")
                time.sleep(0.2)
            host.docker("import", _busybox_tar(tmp), IMAGE)
            yield host
        finally:
            if proc is not None and proc.poll() is None:
                ids = subprocess.run(["docker", "-H", f"unix://{sock}", "ps", "-aq"], capture_output=True,
                                     text=True, timeout=60, check=False).stdout.split()  # fmt: skip
                if ids:
                    subprocess.run(["docker", "-H", f"unix://{sock}", "rm", "-f", *ids], capture_output=True,
                                   timeout=120, check=False)  # fmt: skip
                proc.send_signal(signal.SIGTERM)  # our own child: nsenter exec'd dockerd
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            log.close()
            _end_shims(tmp)
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        _umount_under(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def dockerd() -> Iterator[DockerHost]:
    """A private dockerd (userland proxy on) in a pk- namespace."""
    yield from start_dockerd(userland_proxy=True)


@pytest.fixture(scope="module")
def dockerd_no_proxy() -> Iterator[DockerHost]:
    """A private dockerd with ``--userland-proxy=false``: DNAT alone serves published ports."""
    yield from start_dockerd(userland_proxy=False)
