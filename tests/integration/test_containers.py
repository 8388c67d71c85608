"""Containers through the CLI, against a real private dockerd (tests/containers_fixture.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import run_cli, wait_until
from tests.containers_fixture import IMAGE, DockerHost, dockerd, dockerd_no_proxy

__all__ = ["dockerd", "dockerd_no_proxy"]  # fixtures, used by name

pytestmark = pytest.mark.root


def _sockets(host: DockerHost, *args: str) -> list[dict[str, Any]]:
    got = run_cli(*args, "--json", prefix=host.prefix, env=host.env)
    assert got.code == 0, got.stderr
    doc = json.loads(got.stdout)
    assert doc["schema"] == 1
    return list(doc["sockets"])


def _on_port(socks: list[dict[str, Any]], port: int) -> list[dict[str, Any]]:
    return [s for s in socks if s["local_port"] == port and s["proto"] == "tcp"]


def test_report_names_the_container_behind_docker_proxy(dockerd: DockerHost) -> None:
    cid = dockerd.run("pk-web", "-p", "8080:80", IMAGE, "httpd", "-f", "-p", "0.0.0.0:80", "-h", "/www")
    wait_until(lambda: any(s["process"] == "docker-proxy" for s in _on_port(_sockets(dockerd, "report"), 8080)),
               timeout=30)  # fmt: skip
    proxied = [s for s in _on_port(_sockets(dockerd, "report"), 8080) if s["process"] == "docker-proxy"]
    for s in proxied:
        assert s["container"] == {"runtime": "docker", "id": cid[:12], "name": "pk-web", "image": IMAGE, "port": 80}
    text = run_cli("report", prefix=dockerd.prefix, env=dockerd.env)
    assert text.code == 0 and "CONTAINER" in text.stdout and f"pk-web ({cid[:12]} {IMAGE}) -> 172.17." in text.stdout
    who = run_cli("who", "8080", "--json", prefix=dockerd.prefix, env=dockerd.env)
    holders = json.loads(who.stdout)["holders"]
    assert any(h["container"] and h["container"]["name"] == "pk-web" for h in holders), who.stdout
    # sockets of other processes carry no container
    assert all(s["container"] is None for s in _sockets(dockerd, "ls") if s["process"] not in ("docker-proxy",))


def test_containers_flag_adds_the_sockets_inside(dockerd: DockerHost) -> None:
    dockerd.run("pk-inside", IMAGE, "httpd", "-f", "-p", "127.0.0.1:9000", "-h", "/www")
    wait_until(lambda: any(s["container"] and s["container"]["name"] == "pk-inside"
                           for s in _on_port(_sockets(dockerd, "report", "--containers"), 9000)),
               timeout=30)  # fmt: skip
    inside = [s for s in _on_port(_sockets(dockerd, "report", "--containers"), 9000)]
    assert inside[0]["local_address"] == "127.0.0.1" and inside[0]["container"]["port"] is None
    assert not _on_port(_sockets(dockerd, "report"), 9000)  # not on the host without --containers


def test_netns_container_name_on_ls_and_who(dockerd: DockerHost) -> None:
    cid = dockerd.run("pk-ns", IMAGE, "httpd", "-f", "-p", "0.0.0.0:8111", "-h", "/www")
    wait_until(lambda: bool(_on_port(_sockets(dockerd, "ls", "--netns", "container:pk-ns"), 8111)),
               timeout=30)  # fmt: skip
    assert _on_port(_sockets(dockerd, "ls", "--netns", f"container:{cid[:8]}"), 8111)  # an id prefix works too
    who = run_cli("who", "8111", "--netns", "container:pk-ns", prefix=dockerd.prefix, env=dockerd.env)
    assert who.code == 0 and "httpd" in who.stdout, who.stdout + who.stderr
    # on the daemon's host namespace, nothing listens on 8111
    assert not _on_port(_sockets(dockerd, "ls"), 8111)
    missing = run_cli("ls", "--netns", "container:pk-nope", prefix=dockerd.prefix, env=dockerd.env)
    assert missing.code == 2 and "pk-nope" in missing.stderr and "pk-ns" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_userland_proxy_off_shows_the_published_port(dockerd_no_proxy: DockerHost) -> None:
    host = dockerd_no_proxy
    cid = host.run("pk-dnat", "-p", "8090:80", IMAGE, "httpd", "-f", "-p", "0.0.0.0:80", "-h", "/www")
    wait_until(lambda: bool(_on_port(_sockets(host, "report"), 8090)), timeout=30)
    rows = _on_port(_sockets(host, "report"), 8090)
    assert all(s["process"] != "docker-proxy" for s in rows)
    assert rows and all(s["container"] is not None and s["container"]["name"] == "pk-dnat" for s in rows)
    assert all(s["container"]["id"] == cid[:12] and s["container"]["port"] == 80 for s in rows)
    # either no host socket (state PUBLISHED) or dockerd's reservation, never a proxy
    assert all(s["state"] == "PUBLISHED" or s["process"] == "dockerd" for s in rows)
    text = run_cli("report", prefix=host.prefix, env=host.env)
    assert "pk-dnat" in text.stdout and ("[DNAT]" in text.stdout or "[reservation]" in text.stdout)
