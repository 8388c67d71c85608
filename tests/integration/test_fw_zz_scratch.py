from typing import Any
from tests.integration.test_fw_differential import SCENARIO, ProbeSpec, _run_probes, _listeners
import time

def test_scratch(lab: Any) -> None:
    h = lab(SCENARIO)
    h.run("server", ["sysctl", "-qw", "net.ipv4.icmp_ratemask=0", "net.ipv6.icmp.ratemask="], check=True)
    print(h.run("server", ["sysctl", "net.ipv4.icmp_ratemask", "net.ipv6.icmp.ratemask", "net.ipv4.icmp_ratelimit", "net.ipv6.icmp.ratelimit", "net.ipv4.icmp_msgs_per_sec"]).stdout)
    ls = h.call("server", _listeners)
    h.nft("server", "flush ruleset\ntable inet t {\n chain i {\n type filter hook input priority 0;\n tcp dport 7001 reject with icmpx type port-unreachable\n tcp dport 7002 reject with icmpx type admin-prohibited\n tcp dport 7003 reject with tcp reset\n udp dport 7004 reject\n }\n chain o {\n type filter hook output priority 0; policy drop;\n ct state new counter\n ct state related counter\n ct state established counter\n ct state invalid counter\n ct state untracked counter\n  ct state established,related accept\n }\n}\n")
    for n in (1, 5, 60):
        specs = []
        sp = 30000 + n * 100
        for i in range(n):
            for port, proto in ((7001, "tcp"), (7002, "tcp"), (7003, "tcp"), (7004, "udp")):
                for src, dst in (("10.77.0.2", "10.77.0.1"), ("fd77::2", "fd77::1")):
                    sp += 1
                    specs.append(ProbeSpec(proto, src, sp, dst, port))
        t = time.monotonic()
        res = h.call("client", lambda: _run_probes(specs))
        from collections import Counter
        print(n, time.monotonic() - t, Counter((s.proto, s.dport, ":" in s.dst, r) for s, r in zip(specs, res)))
    print(h.run("server", ["nft", "list", "ruleset"]).stdout)
    print(h.run("server", ["nstat", "-az", "Icmp6OutDestUnreachs", "IcmpOutDestUnreachs", "IcmpMsgOutType3", "Icmp6OutErrors", "IcmpOutRateLimitGlobal", "IcmpOutRateLimitHost", "Icmp6OutRateLimitHost"]).stdout)
    for s in ls: s.close()
