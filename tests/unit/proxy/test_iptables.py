"""The iptables rules for transparent mode (what gets installed; e2e runs them)."""

from __future__ import annotations

from gossamer.proxy.iptables import InterceptSpec, install_commands, remove_commands


def test_rules_redirect_and_exclude_the_proxy_loopback_and_admin():
    cmds = [
        " ".join(c)
        for c in install_commands(InterceptSpec(proxy_uid=1337, exclude_inbound_ports=(22,)))
    ]
    text = "\n".join(cmds)
    assert "-A GOSSAMER_OUTPUT -m owner --uid-owner 1337 -j RETURN" in text
    assert "-A GOSSAMER_OUTPUT -o lo -j RETURN" in text
    assert "-A GOSSAMER_OUTPUT -p tcp -j REDIRECT --to-ports 15001" in text
    assert "-A GOSSAMER_INBOUND -p tcp --dport 15000 -j RETURN" in text
    assert "-A GOSSAMER_INBOUND -p tcp --dport 22 -j RETURN" in text
    assert "-A GOSSAMER_INBOUND -p tcp -j REDIRECT --to-ports 15006" in text
    # exclusions come before the redirect in each chain
    assert text.index("--uid-owner") < text.index("--to-ports 15001")
    assert text.index("--dport 15000") < text.index("--to-ports 15006")
    assert cmds[-1].endswith("-A OUTPUT -p tcp -j GOSSAMER_OUTPUT")


def test_outbound_only_and_removal():
    cmds = install_commands(InterceptSpec(proxy_uid=0, intercept_inbound=False))
    assert not any("PREROUTING" in c for c in cmds)
    removal = [" ".join(c) for c in remove_commands()]
    assert any("-D PREROUTING" in c for c in removal) and any(
        "-X GOSSAMER_OUTPUT" in c for c in removal
    )
