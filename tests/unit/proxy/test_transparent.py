"""Transparent mode: the iptables rules (e2e runs them) and SO_ORIGINAL_DST parsing."""

from __future__ import annotations

import socket
import struct

from gossamer.errors import UsageError
from gossamer.proxy.listeners.transparent import (
    InterceptSpec,
    install_commands,
    original_dst,
    parse_sockaddr,
    remove_commands,
)


def test_ipv4_sockaddr():
    raw = (
        struct.pack("=H", socket.AF_INET)
        + struct.pack("!H", 8080)
        + socket.inet_aton("10.1.2.3")
        + b"\0" * 8
    )
    assert parse_sockaddr(raw) == ("10.1.2.3", 8080)


def test_ipv6_sockaddr():
    raw = (
        struct.pack("=H", socket.AF_INET6)
        + struct.pack("!H", 443)
        + b"\0" * 4
        + socket.inet_pton(socket.AF_INET6, "fd00::7")
        + b"\0" * 4
    )
    assert parse_sockaddr(raw) == ("fd00::7", 443)


def test_garbage_and_unredirected_sockets():
    assert parse_sockaddr(b"\x01") is None
    assert parse_sockaddr(struct.pack("=H", 99) + b"\0" * 14) is None
    assert original_dst(None) is None
    with socket.socket() as s:  # not redirected: the kernel has no original destination
        s.bind(("127.0.0.1", 0))
        assert original_dst(s) is None


def test_rules_redirect_and_exclude_the_proxy_loopback_and_metrics():
    cmds = [
        " ".join(c)
        for c in install_commands(InterceptSpec(proxy_uid=1337, exclude_inbound_ports=(22,)))
    ]
    text = "\n".join(cmds)
    assert "-A GOSSAMER_OUTPUT -m owner --uid-owner 1337 -j RETURN" in text
    assert "-A GOSSAMER_OUTPUT -o lo -j RETURN" in text
    assert "-A GOSSAMER_OUTPUT -p tcp -j REDIRECT --to-ports 15001" in text
    assert "-A GOSSAMER_INBOUND -p tcp --dport 15090 -j RETURN" in text
    # the admin port listens on 127.0.0.1: from outside it is intercepted like the app's
    assert "--dport 15000" not in text
    assert "-A GOSSAMER_INBOUND -p tcp --dport 22 -j RETURN" in text
    assert "-A GOSSAMER_INBOUND -p tcp -j REDIRECT --to-ports 15006" in text
    # exclusions come before the redirect in each chain
    assert text.index("--uid-owner") < text.index("--to-ports 15001")
    assert text.index("--dport 15090") < text.index("--to-ports 15006")
    assert cmds[-1].endswith("-A OUTPUT -p tcp -j GOSSAMER_OUTPUT")


def test_outbound_only_and_removal():
    cmds = install_commands(InterceptSpec(proxy_uid=0, intercept_inbound=False))
    assert not any("PREROUTING" in c for c in cmds)
    removal = [" ".join(c) for c in remove_commands()]
    assert any("-D PREROUTING" in c for c in removal) and any(
        "-X GOSSAMER_OUTPUT" in c for c in removal
    )


def test_dns_capture_goes_first_in_output_and_exempts_the_proxy():
    assert not any("GOSSAMER_DNS" in " ".join(c) for c in install_commands(InterceptSpec(1337)))
    spec = InterceptSpec(1337, dns_port=15053, dns_servers=("127.0.0.11", "127.0.0.11"))
    cmds = [" ".join(c) for c in install_commands(spec)]
    dns = [c for c in cmds if "GOSSAMER_DNS" in c]
    to = "--dport 53 -j REDIRECT --to-ports 15053"
    assert dns == [
        "iptables -w -t nat -N GOSSAMER_DNS",
        "iptables -w -t nat -A GOSSAMER_DNS -m owner --uid-owner 1337 -j RETURN",
        # only the app's resolvers: Docker's DNS sends its own queries for outside
        # names from the namespace too, which must not come back to the sidecar
        f"iptables -w -t nat -A GOSSAMER_DNS -d 127.0.0.11/32 -p udp {to}",
        f"iptables -w -t nat -A GOSSAMER_DNS -d 127.0.0.11/32 -p tcp {to}",
        # inserted at the top: before Docker's DOCKER_OUTPUT DNAT of 127.0.0.11 and
        # before GOSSAMER_OUTPUT's loopback RETURNs
        "iptables -w -t nat -I OUTPUT 1 -j GOSSAMER_DNS",
    ]
    removal = [" ".join(c) for c in remove_commands()]
    assert "iptables -w -t nat -D OUTPUT -j GOSSAMER_DNS" in removal
    assert removal.index("iptables -w -t nat -D OUTPUT -j GOSSAMER_DNS") < removal.index(
        "iptables -w -t nat -X GOSSAMER_DNS"
    )


def test_iptables_install_dns_servers_flag_and_default(monkeypatch):
    from click.testing import CliRunner

    from gossamer.cli import proxy_cmd
    from gossamer.proxy.listeners import dns

    def run(*args: str):
        return CliRunner().invoke(
            proxy_cmd.proxy, ["iptables", "install", "--dry-run", *args], catch_exceptions=True
        )

    out = run("--dns-port", "15053", "--dns-servers", "10.0.0.2,127.0.0.11")
    assert out.exit_code == 0, out.output
    assert "-d 10.0.0.2/32 -p udp --dport 53" in out.output
    assert "-d 127.0.0.11/32 -p tcp --dport 53" in out.output
    monkeypatch.setattr(dns, "system_upstreams", lambda: [("127.0.0.11", 53), ("fe80::1", 53)])
    out = run("--dns-port", "15053")
    assert out.exit_code == 0 and out.output.count("-d 127.0.0.11/32") == 2, out.output
    assert "fe80" not in out.output
    assert "GOSSAMER_DNS" not in run().output  # no --dns-port: DNS untouched
    for bad in ("dns.example", "10.0.0.2:5353"):
        out = run("--dns-port", "15053", "--dns-servers", bad)
        assert out.exit_code != 0 and isinstance(out.exception, UsageError), out.output
    monkeypatch.setattr(dns, "system_upstreams", lambda: [("fe80::1", 53)])
    out = run("--dns-port", "15053")
    assert isinstance(out.exception, UsageError) and "no IPv4 nameserver" in str(out.exception)
