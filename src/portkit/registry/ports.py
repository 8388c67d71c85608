"""Port facts portkit carries itself: number classes and a table of common ports.

The table is portkit's own, written from the protocols' public documentation: for each
common port its usual service, what it is, and whether it is a frequent target or risky
to expose. ``category`` marks services that should not face every interface (databases,
caches, remote desktops, cleartext remote shells ...); the host report notes them when
they listen on 0.0.0.0 or ::. Notes are English templates marked with ``N_`` so the
translation catalogs can pick them up.
"""

from __future__ import annotations

from dataclasses import dataclass

from portkit.model.text import N_

WELL_KNOWN = (0, 1023)
REGISTERED = (1024, 49151)
DYNAMIC = (49152, 65535)
# Linux's default net.ipv4.ip_local_port_range; the backend reads the real one.
LINUX_DEFAULT_EPHEMERAL = (32768, 60999)
IANA_DYNAMIC = DYNAMIC


def port_class(port: int) -> str:
    """``"well-known"`` (0-1023), ``"registered"`` (1024-49151) or ``"dynamic"`` (49152-65535)."""
    if port < 0 or port > 65535:
        raise ValueError(f"port {port} is outside 0-65535")
    if port <= WELL_KNOWN[1]:
        return "well-known"
    if port <= REGISTERED[1]:
        return "registered"
    return "dynamic"


def parse_port_range(text: str) -> tuple[int, int]:
    """``ip_local_port_range`` text, ``"32768\\t60999\\n"`` -> ``(32768, 60999)``; ValueError if malformed."""
    parts = text.split()
    if len(parts) != 2:
        raise ValueError(f"not a port range: {text!r}")
    low, high = int(parts[0]), int(parts[1])
    if not 0 <= low <= high <= 65535:
        raise ValueError(f"not a port range: {text!r}")
    return low, high


@dataclass(frozen=True, slots=True)
class CommonPort:
    port: int
    name: str
    protos: tuple[str, ...]
    description: str
    note: str
    category: str | None = None  # sensitive when exposed on all interfaces


_T = ("tcp",)
_U = ("udp",)
_TU = ("tcp", "udp")

COMMON_PORTS: tuple[CommonPort, ...] = (
    CommonPort(20, "ftp-data", _T, "FTP data channel", N_("FTP's active-mode data channel; FTP sends passwords in cleartext.")),
    CommonPort(21, "ftp", _T, "File Transfer Protocol", N_("FTP control; logins travel in cleartext and it is scanned constantly for anonymous or weak logins."), "cleartext-login"),
    CommonPort(22, "ssh", _T, "Secure Shell", N_("Encrypted remote login; one of the most brute-forced ports on the Internet, so prefer keys over passwords.")),
    CommonPort(23, "telnet", _T, "Telnet", N_("Cleartext remote login; heavily scanned (IoT botnets such as Mirai spread through it). Use SSH instead."), "telnet-like"),
    CommonPort(25, "smtp", _T, "Simple Mail Transfer Protocol", N_("Mail transfer between servers; open relays are abused for spam.")),
    CommonPort(53, "domain", _TU, "Domain Name System", N_("DNS; an open resolver on the Internet is abused for amplification attacks.")),
    CommonPort(67, "bootps", _U, "DHCP server", N_("DHCP/BOOTP server; answers address requests on the local link.")),
    CommonPort(68, "bootpc", _U, "DHCP client", N_("DHCP/BOOTP client side.")),
    CommonPort(69, "tftp", _U, "Trivial File Transfer Protocol", N_("TFTP has no authentication at all; keep it on boot networks only."), "file-sharing"),
    CommonPort(80, "http", _T, "HTTP", N_("Unencrypted web traffic; scanned constantly for vulnerable web applications.")),
    CommonPort(88, "kerberos", _TU, "Kerberos", N_("Kerberos authentication (Active Directory domain controllers).")),
    CommonPort(110, "pop3", _T, "POP3 mail retrieval", N_("Mail retrieval; cleartext unless STARTTLS is enforced.")),
    CommonPort(111, "sunrpc", _TU, "ONC RPC portmapper", N_("rpcbind maps RPC services (NFS) to ports; exposed, it leaks service details and is used for amplification."), "file-sharing"),
    CommonPort(119, "nntp", _T, "Network News Transfer Protocol", N_("Usenet news transfer.")),
    CommonPort(123, "ntp", _U, "Network Time Protocol", N_("Time synchronisation; old servers answering 'monlist' were abused for amplification.")),
    CommonPort(135, "msrpc", _T, "Microsoft RPC endpoint mapper", N_("Windows RPC; a classic worm target (Blaster). Never expose it."), "file-sharing"),
    CommonPort(137, "netbios-ns", _U, "NetBIOS name service", N_("Windows name service; leaks host and user names."), "file-sharing"),
    CommonPort(138, "netbios-dgm", _U, "NetBIOS datagram service", N_("Windows browsing datagrams; local networks only."), "file-sharing"),
    CommonPort(139, "netbios-ssn", _T, "NetBIOS session service", N_("SMB over NetBIOS; file sharing that should stay on the local network."), "file-sharing"),
    CommonPort(143, "imap", _T, "IMAP mail access", N_("Mail access; cleartext unless STARTTLS is enforced.")),
    CommonPort(161, "snmp", _U, "Simple Network Management Protocol", N_("Device management; default communities ('public') are tried by every scanner."), "management"),
    CommonPort(389, "ldap", _TU, "LDAP directory", N_("Directory access; anonymous binds leak accounts, and CLDAP is used for amplification."), "database"),
    CommonPort(443, "https", _TU, "HTTP over TLS (and HTTP/3 over UDP)", N_("Encrypted web traffic.")),
    CommonPort(445, "microsoft-ds", _T, "SMB over TCP", N_("Windows file sharing; the port WannaCry and EternalBlue spread through. Never expose it."), "file-sharing"),
    CommonPort(465, "submissions", _T, "SMTP submission over TLS", N_("Mail submission by clients, encrypted.")),
    CommonPort(500, "isakmp", _U, "IKE (IPsec key exchange)", N_("IPsec VPN key exchange.")),
    CommonPort(512, "exec", _T, "rexec", N_("BSD remote execution with cleartext passwords; obsolete."), "telnet-like"),
    CommonPort(513, "login", _T, "rlogin", N_("BSD remote login trusting host names; obsolete and unsafe."), "telnet-like"),
    CommonPort(514, "shell", _T, "rsh (UDP: syslog)", N_("BSD remote shell trusting host names; obsolete and unsafe. On UDP, 514 is syslog."), "telnet-like"),
    CommonPort(587, "submission", _T, "Mail submission", N_("Mail submission by clients (STARTTLS).")),
    CommonPort(631, "ipp", _TU, "Internet Printing Protocol", N_("CUPS printing; cups-browsed on UDP 631 had remotely exploitable bugs (2024).")),
    CommonPort(636, "ldaps", _T, "LDAP over TLS", N_("Encrypted directory access."), "database"),
    CommonPort(873, "rsync", _T, "rsync daemon", N_("rsync modules are often readable without a password."), "file-sharing"),
    CommonPort(993, "imaps", _T, "IMAP over TLS", N_("Encrypted mail access.")),
    CommonPort(995, "pop3s", _T, "POP3 over TLS", N_("Encrypted mail retrieval.")),
    CommonPort(1080, "socks", _T, "SOCKS proxy", N_("An open SOCKS proxy is abused to relay attacks."), "proxy"),
    CommonPort(1194, "openvpn", _TU, "OpenVPN", N_("OpenVPN tunnels.")),
    CommonPort(1433, "ms-sql-s", _T, "Microsoft SQL Server", N_("Database; brute-forced constantly (the 'sa' account)."), "database"),
    CommonPort(1521, "oracle", _T, "Oracle database listener", N_("Database listener; should never face the Internet."), "database"),
    CommonPort(1883, "mqtt", _T, "MQTT broker", N_("IoT messaging, often without authentication."), "message-queue"),
    CommonPort(2049, "nfs", _TU, "Network File System", N_("File sharing trusting client addresses; keep it on trusted networks."), "file-sharing"),
    CommonPort(2375, "docker", _T, "Docker API (plain HTTP)", N_("The unauthenticated Docker API: whoever reaches it is root on the host."), "container-api"),
    CommonPort(2376, "docker-s", _T, "Docker API over TLS", N_("The Docker API; safe only with client certificates."), "container-api"),
    CommonPort(2379, "etcd-client", _T, "etcd client API", N_("Kubernetes' key-value store; holds cluster secrets."), "database"),
    CommonPort(3306, "mysql", _T, "MySQL / MariaDB", N_("Database; brute-forced constantly and a frequent source of data leaks."), "database"),
    CommonPort(3389, "ms-wbt-server", _TU, "Remote Desktop Protocol", N_("Windows remote desktop; among the most attacked ports (BlueKeep, ransomware entry)."), "remote-desktop"),
    CommonPort(4369, "epmd", _T, "Erlang port mapper", N_("Erlang cluster discovery (RabbitMQ, CouchDB); exposes node names."), "message-queue"),
    CommonPort(5000, "upnp", _T, "UPnP / development servers", N_("Flask's and the Docker registry's default; also UPnP on routers.")),
    CommonPort(5353, "mdns", _U, "Multicast DNS", N_("Local name discovery (Avahi, Bonjour); local network only.")),
    CommonPort(5432, "postgresql", _T, "PostgreSQL", N_("Database; should be reached through a firewall or a tunnel only."), "database"),
    CommonPort(5672, "amqp", _T, "AMQP (RabbitMQ)", N_("Message broker; default guest account on old installs."), "message-queue"),
    CommonPort(5900, "vnc", _T, "VNC remote framebuffer", N_("Remote desktop, often with weak or no password."), "remote-desktop"),
    CommonPort(5984, "couchdb", _T, "CouchDB", N_("Database with an HTTP API; old versions allowed admin by default."), "database"),
    CommonPort(6379, "redis", _T, "Redis", N_("Cache with no password by default; exposed instances are taken over to plant SSH keys and miners."), "cache"),
    CommonPort(6443, "kube-apiserver", _T, "Kubernetes API server", N_("Cluster control plane; anonymous access must stay off.")),
    CommonPort(8000, "http-alt", _T, "alternative HTTP", N_("Common default of development web servers.")),
    CommonPort(8080, "http-alt", _T, "alternative HTTP / proxies", N_("Application servers and proxies; admin consoles here are frequent targets.")),
    CommonPort(8443, "https-alt", _T, "alternative HTTPS", N_("Application servers and admin consoles over TLS.")),
    CommonPort(8086, "influxdb", _T, "InfluxDB", N_("Time-series database; old versions had no authentication by default."), "database"),
    CommonPort(9000, "cslistener", _T, "PHP-FPM / various", N_("PHP-FPM's FastCGI port: exposed, it lets anyone run PHP code."), "app-backend"),
    CommonPort(9042, "cassandra", _T, "Cassandra CQL", N_("Database; default install has no authentication."), "database"),
    CommonPort(9090, "prometheus", _T, "Prometheus", N_("Metrics server; leaks infrastructure details.")),
    CommonPort(9092, "kafka", _T, "Apache Kafka", N_("Message broker; plaintext listeners have no authentication."), "message-queue"),
    CommonPort(9200, "elasticsearch", _T, "Elasticsearch HTTP", N_("Search database; exposed clusters are a leading source of data leaks."), "database"),
    CommonPort(9300, "elasticsearch-transport", _T, "Elasticsearch transport", N_("Elasticsearch node-to-node traffic."), "database"),
    CommonPort(10250, "kubelet", _T, "Kubernetes kubelet API", N_("Node agent; anonymous access allows running commands in pods."), "container-api"),
    CommonPort(11211, "memcache", _TU, "Memcached", N_("Cache without authentication; UDP 11211 powered record amplification attacks."), "cache"),
    CommonPort(27017, "mongodb", _T, "MongoDB", N_("Database; thousands of unauthenticated instances were wiped for ransom."), "database"),
)

_BY_PORT: dict[int, CommonPort] = {c.port: c for c in COMMON_PORTS}
# Later entries win, so "http-alt" means 8080 (as in /etc/services), not 8000.
_BY_NAME: dict[str, CommonPort] = {c.name: c for c in COMMON_PORTS}

# Categories the host report flags when the port listens on every interface.
SENSITIVE_CATEGORIES = frozenset(
    {"database", "cache", "remote-desktop", "telnet-like", "file-sharing", "container-api", "message-queue", "cleartext-login", "app-backend", "management", "proxy"}
)


def common_port(port: int) -> CommonPort | None:
    return _BY_PORT.get(port)


def common_port_by_name(name: str) -> CommonPort | None:
    return _BY_NAME.get(name.lower())


def sensitive_category(port: int, proto: str) -> str | None:
    """The category of a service that should not listen on every interface, else None."""
    c = _BY_PORT.get(port)
    if c is None or c.category not in SENSITIVE_CATEGORIES or proto not in c.protos:
        return None
    return c.category
