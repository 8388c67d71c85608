"""nf_tables numbers and the names nft gives them: families, hooks, datatypes, keys, values.

Tables only, read by the expression decoder (:mod:`portkit.parse.nftexpr`), the decompiler
(:mod:`portkit.parse.nftdecompile`) and the ruleset assembler (:mod:`portkit.parse.nftnetlink`).
Each is the kernel's (or libnftables') numbering, e.g. ``CT_STATE[2] == "established"``.
"""

from __future__ import annotations

from portkit.model.firewall import PROTO_NUMBERS

FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}
INET_HOOKS = {0: "prerouting", 1: "input", 2: "forward", 3: "output", 4: "postrouting", 5: "ingress"}
HOOKS = {"netdev": {0: "ingress", 1: "egress"}, "arp": {0: "input", 1: "output", 2: "forward"}}

# set flags (NFT_SET_*)
SET_ANONYMOUS, SET_INTERVAL, SET_MAP, SET_CONCAT = 0x1, 0x4, 0x8, 0x80

# --------------------------------------------------------------------------- values, as nft prints them

PROTO_NAMES = {n: name for name, n in PROTO_NUMBERS.items()}  # 58: "ipv6-icmp", as nft prints it
ICMP_TYPES = {0: "echo-reply", 3: "destination-unreachable", 4: "source-quench", 5: "redirect",
              8: "echo-request", 9: "router-advertisement", 10: "router-solicitation", 11: "time-exceeded",
              12: "parameter-problem", 13: "timestamp-request", 14: "timestamp-reply", 15: "info-request",
              16: "info-reply", 17: "address-mask-request", 18: "address-mask-reply"}  # fmt: skip
ICMP6_TYPES = {1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem",
               128: "echo-request", 129: "echo-reply", 130: "mld-listener-query", 131: "mld-listener-report",
               132: "mld-listener-done", 133: "nd-router-solicit", 134: "nd-router-advert",
               135: "nd-neighbor-solicit", 136: "nd-neighbor-advert", 137: "nd-redirect",
               138: "router-renumbering", 143: "mld2-listener-report"}  # fmt: skip
CT_STATE = {1: "invalid", 2: "established", 4: "related", 8: "new", 64: "untracked"}
CT_STATUS = {1: "expected", 2: "seen-reply", 4: "assured", 8: "confirmed", 16: "snat", 32: "dnat", 512: "dying"}
TCP_FLAGS = {1: "fin", 2: "syn", 4: "rst", 8: "psh", 16: "ack", 32: "urg", 64: "ecn", 128: "cwr"}
RTN_TYPES = {0: "unspec", 1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
             6: "blackhole", 7: "unreachable", 8: "prohibit"}  # fmt: skip
PKTTYPES = {0: "host", 1: "broadcast", 2: "multicast", 3: "other"}
ETHERTYPES = {0x0800: "ip", 0x86DD: "ip6", 0x0806: "arp", 0x8100: "vlan"}
REJECT_ICMP = {0: "net-unreachable", 1: "host-unreachable", 2: "prot-unreachable", 3: "port-unreachable",
               9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}  # fmt: skip
REJECT_ICMP6 = {0: "no-route", 1: "admin-prohibited", 3: "addr-unreachable", 4: "port-unreachable",
                5: "policy-fail", 6: "reject-route"}  # fmt: skip
REJECT_ICMPX = {0: "no-route", 1: "port-unreachable", 2: "host-unreachable", 3: "admin-prohibited"}

FLAG_NAMES = {"ct state": CT_STATE, "ct status": CT_STATUS, "tcp flags": TCP_FLAGS}
ADDR_LEN = {"ip saddr": 4, "ip daddr": 4, "ip6 saddr": 16, "ip6 daddr": 16}

# set key datatypes (nft's datatype ids) -> a field whose values have that type
TYPE_KEY = {2: "meta nfproto", 7: "ip saddr", 8: "ip6 saddr", 10: "meta protocol", 12: "meta l4proto",
            13: "th dport", 14: "icmp type", 15: "tcp flags", 19: "meta mark", 20: "meta iif",
            26: "ct state", 27: "ct direction", 28: "ct status", 29: "icmpv6 type", 31: "meta pkttype",
            38: "fib daddr type", 41: "meta iifname"}  # fmt: skip
TYPE_NAME = {1: "verdict", 2: "nf_proto", 4: "integer", 5: "string", 7: "ipv4_addr", 8: "ipv6_addr",
             9: "ether_addr", 10: "ether_type", 12: "inet_proto", 13: "inet_service", 14: "icmp_type",
             15: "tcp_flag", 19: "mark", 20: "iface_index", 26: "ct_state", 27: "ct_dir", 28: "ct_status",
             29: "icmpv6_type", 31: "pkt_type", 38: "fib_addrtype", 41: "ifname"}  # fmt: skip
TYPE_LEN = {2: 1, 7: 4, 8: 16, 10: 2, 12: 1, 13: 2, 14: 1, 15: 1, 19: 4, 20: 4, 26: 4, 27: 1, 28: 4,
            29: 1, 31: 1, 38: 4, 41: 16}  # fmt: skip

# --------------------------------------------------------------------------- expressions

VERDICTS = {0: "drop", 1: "accept", 3: "queue", -1: "continue", -3: "jump", -4: "goto", -5: "return"}
CMP_OPS = {0: "==", 1: "!=", 2: "<", 3: "<=", 4: ">", 5: ">="}
META_KEYS = {1: "protocol", 3: "mark", 4: "iif", 5: "oif", 6: "iifname", 7: "oifname", 15: "nfproto",
             16: "l4proto", 19: "pkttype", 2: "priority", 8: "iiftype", 9: "oiftype", 10: "skuid",
             11: "skgid", 12: "nftrace", 13: "rtclassid", 14: "secmark", 20: "cpu", 21: "iifgroup",
             22: "oifgroup", 23: "cgroup", 24: "random", 25: "secpath", 26: "iifkind", 27: "oifkind",
             0: "length", 33: "sdif", 34: "sdifname"}  # fmt: skip
CT_KEYS = {0: "state", 1: "direction", 2: "status", 3: "mark", 4: "secmark", 5: "expiration", 6: "helper",
           7: "l3proto", 8: "saddr", 9: "daddr", 10: "protocol", 11: "proto-src", 12: "proto-dst",
           13: "label", 14: "packets", 15: "bytes", 16: "avgpkt", 17: "zone", 18: "event", 19: "ip saddr",
           20: "ip daddr", 21: "ip6 saddr", 22: "ip6 daddr", 23: "id"}  # fmt: skip
LIMIT_UNITS = {1: "second", 60: "minute", 3600: "hour", 86400: "day", 604800: "week"}
PASSIVE_EXPRS = {"counter": "counter", "log": "log", "notrack": "notrack", "last": "last", "synproxy": "synproxy"}

# network header fields by offset: (field, bytes)
NH_FIELDS = {"ip": {9: ("ip protocol", 1), 12: ("ip saddr", 4), 16: ("ip daddr", 4)},
             "ip6": {6: ("ip6 nexthdr", 1), 8: ("ip6 saddr", 16), 24: ("ip6 daddr", 16)}}  # fmt: skip
