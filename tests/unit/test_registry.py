"""Port registry: classes, portkit's table, /etc/services and nmap-services parsing."""

from __future__ import annotations

import pytest

from portkit.registry import COMMON_PORTS, ServiceDb, port_class, sensitive_category, service_name
from portkit.registry.ports import parse_port_range
from portkit.registry.services import parse_etc_services, parse_nmap_services

ETC = """\
# Network services, Internet style
tcpmux		1/tcp				# TCP port service multiplexer
ssh		22/tcp				# SSH Remote Login Protocol
domain		53/tcp
domain		53/udp
http		80/tcp		www		# WorldWideWeb HTTP
broken		notaport/tcp
postgresql	5432/tcp	postgres	# PostgreSQL Database
"""

NMAP = """\
# nmap-services
ssh	22/tcp	0.182286	# Secure Shell Login
http-alt	8000/tcp	0.012	# A common alternative http port
irdmi	8000/udp	0.0003
unknown	8001/tcp	0.001
cslistener	9000/tcp	0.0027
x11	6000/tcp	0.0025	# X Window server
x11	6001/tcp	0.0001
"""


def test_port_class_boundaries() -> None:
    assert [port_class(p) for p in (0, 1023, 1024, 49151, 49152, 65535)] == [
        "well-known", "well-known", "registered", "registered", "dynamic", "dynamic",
    ]  # fmt: skip
    with pytest.raises(ValueError):
        port_class(65536)


def test_own_table_is_consistent() -> None:
    ports = [c.port for c in COMMON_PORTS]
    assert len(ports) == len(set(ports))
    for c in COMMON_PORTS:
        assert 0 < c.port <= 65535 and c.protos and c.note.endswith(".") and c.description
    for port in (3306, 5432, 6379, 27017, 3389, 23, 11211, 9200):
        assert sensitive_category(port, "tcp") is not None, port
    assert sensitive_category(22, "tcp") is None
    assert sensitive_category(3306, "udp") is None  # MySQL has no UDP service


def test_parse_etc_services() -> None:
    recs = parse_etc_services(ETC)
    assert [(r.name, r.port, r.proto) for r in recs] == [
        ("tcpmux", 1, "tcp"), ("ssh", 22, "tcp"), ("domain", 53, "tcp"), ("domain", 53, "udp"),
        ("http", 80, "tcp"), ("postgresql", 5432, "tcp"),
    ]  # fmt: skip
    http = recs[4]
    assert http.aliases == ("www",) and http.description == "WorldWideWeb HTTP"


def test_parse_nmap_services_skips_unknown() -> None:
    recs = parse_nmap_services(NMAP)
    assert ("unknown", 8001) not in {(r.name, r.port) for r in recs}
    ssh = recs[0]
    assert (ssh.name, ssh.port, ssh.proto, ssh.frequency, ssh.description) == ("ssh", 22, "tcp", 0.182286, "Secure Shell Login")


def test_service_db_lookups() -> None:
    db = ServiceDb(parse_etc_services(ETC), parse_nmap_services(NMAP))
    assert db.name(22, "tcp") == "ssh"
    assert db.name(53, "udp") == "domain"
    assert db.name(6379, "tcp") == "redis"  # not in this /etc/services: portkit's own table
    assert db.name(8000, "udp") is None  # nmap's names are not used for the socket table
    assert db.port_for_name("ssh") == 22
    assert db.port_for_name("WWW") == 80  # an alias, any case
    assert db.port_for_name("mongodb") == 27017  # portkit's table
    assert db.port_for_name("x11") == 6000  # nmap: the most frequently open port of that name
    assert db.port_for_name("no-such-service") is None
    names = [(r.name, r.proto) for r in db.records_for_port(8000)]
    assert names == [("http-alt", "tcp"), ("irdmi", "udp")]
    assert service_name(3389, "tcp") == "ms-wbt-server" and service_name(1, "tcp") is None


def test_records_for_port_fill_description_from_own_table() -> None:
    db = ServiceDb(parse_etc_services("mysql 3306/tcp\n"), [])
    recs = db.records_for_port(3306)
    assert [(r.name, r.proto, r.description) for r in recs] == [("mysql", "tcp", "MySQL / MariaDB")]


def test_parse_port_range() -> None:
    assert parse_port_range("32768\t60999\n") == (32768, 60999)
    for bad in ("", "1", "9 3", "a b", "1 70000"):
        with pytest.raises(ValueError):
            parse_port_range(bad)
