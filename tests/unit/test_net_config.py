"""ip= and one.* network settings, the per-interface plan, resolv.conf."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from init import config
from init.net import links, resolv, static
from init.net.manager import LeaseData, NetSettings, NetworkManager, overlay, plan


@pytest.mark.parametrize("value, method, device, address, gateway", [
    ("", "dhcp", None, None, None),
    ("dhcp", "dhcp", None, None, None),
    ("off", "off", None, None, None),
    ("dhcp6", "ipv6", None, None, None),
    ("eth1:dhcp", "dhcp", "eth1", None, None),
    ("10.0.0.2::10.0.0.1:255.255.255.0::eth0:off", "static", "eth0", "10.0.0.2/24", "10.0.0.1"),
    ("10.0.0.2::10.0.0.1:16:vm:eth0:none:10.0.0.53", "static", "eth0", "10.0.0.2/16",
     "10.0.0.1"),
    ("10.1.2.3", "static", None, "10.1.2.3/8", None),  # classful, as the kernel does
    ("[2001:db8::2]::[2001:db8::1]:64::eth0:", "static", "eth0", "2001:db8::2/64",
     "2001:db8::1"),
    ("::::vm:eth0:dhcp", "dhcp", "eth0", None, None),
])
def test_ip_forms(value: str, method: str, device: str | None, address: str | None,
                  gateway: str | None) -> None:
    p = static.parse(value)
    assert (p.method, p.device) == (method, device)
    assert (str(p.address) if p.address else None) == address
    assert (str(p.gateway) if p.gateway else None) == gateway


@pytest.mark.parametrize("value, why", [
    ("10.0.0.2::10.0.0.1:255.0.255.0::eth0:off", "not a netmask"),
    ("10.0.0.300::::::off", "not an IP address"),
    ("[2001:db8::2]::::::off", "give a prefix length"),
    ("10.0.0.2::[2001:db8::1]:24::eth0:off", "family"),
    ("eth0:teleport", "unknown method"),
    ("10.0.0.2::::h:eth/0:off", "interface name"),
    ("[2001:db8::2::", "unbalanced"),
    ("1:2:3:4:5:6:7:8:9:10:11", "at most 10"),
])
def test_bad_ip_values(value: str, why: str) -> None:
    with pytest.raises(static.IpParamError, match=why):
        static.parse(value)


def test_cmdline_network_settings() -> None:
    cfg = config.from_cmdline(
        "console=ttyS0 ip=dhcp one.ip=10.0.0.2::10.0.0.1:24::eth1:off one.dhcp_timeout=2.5 "
        "one.dns=10.0.0.53,[2001:db8::53] one.search=a.example,b.example one.hostname=vm1")
    assert cfg.net_wait == 2.5
    assert [p.method for p in cfg.ip] == ["dhcp", "static"]
    assert cfg.dns == ("10.0.0.53", "2001:db8::53")
    assert cfg.search == ("a.example", "b.example")
    assert cfg.hostname_explicit
    assert cfg.unknown == ()
    defaults = config.from_cmdline("console=ttyS0")
    assert defaults.net_wait == config.default("net_wait") and defaults.ip == ()
    assert not defaults.hostname_explicit


@pytest.mark.parametrize("text, needle", [
    ("one.dhcp_timeout=soon", "one.dhcp_timeout='soon'"),
    ("ip=10.0.0.999", "ip='10.0.0.999'"),
    ("one.ip=eth0:teleport", "one.ip='eth0:teleport'"),
    ("one.dns=resolver", "one.dns='resolver'"),
    ("one.search=a;b", "one.search='a;b'"),
])
def test_bad_network_settings_name_the_key(text: str, needle: str) -> None:
    with pytest.raises(config.ConfigError, match=needle):
        config.from_cmdline(text)


def _link(index: int, name: str, kind: str | None = None, arphrd: int = 1) -> links.LinkInfo:
    return links.LinkInfo(index, name, f"52:54:00:00:00:{index:02x}", kind, arphrd, 0)


LINKS = [_link(1, "lo", arphrd=772), _link(2, "eth0"), _link(3, "eth1"),
         _link(4, "veth9", kind="veth")]


def test_plan_defaults_to_dhcp_on_every_nic_only() -> None:
    assert {n: p.method for n, p in plan(LINKS, []).items()} == {"eth0": "dhcp", "eth1": "dhcp"}


def test_plan_static_without_device_takes_the_first_nic() -> None:
    p = plan(LINKS, [static.parse("10.0.0.2::10.0.0.1:24")])
    assert p["eth0"].method == "static" and p["eth1"].method == "off"
    p = plan(LINKS, [static.parse("10.0.0.2::10.0.0.1:24"), static.parse("dhcp")])
    assert p["eth0"].method == "static" and p["eth1"].method == "dhcp"


def test_plan_device_specific_wins_and_later_wins() -> None:
    p = plan(LINKS, [static.parse("eth1:off"), static.parse("dhcp6"),
                     static.parse("10.0.0.2:::::eth1:off")])
    assert p["eth0"].method == "ipv6"
    assert p["eth1"].method == "static"


def test_plan_named_interfaces_only() -> None:
    assert list(plan(LINKS, [], only=["veth9"])) == ["veth9"]


def test_resolv_conf_render_and_atomic_write(tmp_path: Path) -> None:
    text = resolv.render(["10.0.0.53", "fe80::1%eth0", "10.0.0.53"], ["a.example"])
    assert text.splitlines()[1:] == ["search a.example", "nameserver 10.0.0.53",
                                     "nameserver fe80::1%eth0"]
    path = tmp_path / "etc" / "resolv.conf"
    assert resolv.write(path, text) and not resolv.write(path, text)
    assert path.read_text() == text
    assert resolv.scoped("fe80::1", "eth0") == "fe80::1%eth0"
    assert resolv.scoped("2001:db8::1", "eth0") == "2001:db8::1"


def test_cmdline_dns_replaces_lease_dns(tmp_path: Path) -> None:
    mgr = NetworkManager(NetSettings(wait=0, dns=("192.0.2.53",), search=("x.example",),
                                     resolv_conf=tmp_path / "r"))
    text = mgr.resolv_conf_text()
    assert text is not None and "nameserver 192.0.2.53" in text and "search x.example" in text
    empty = NetworkManager(NetSettings(wait=0, resolv_conf=tmp_path / "r"))
    assert empty.resolv_conf_text() is None


class _State:
    def __init__(self, name: str) -> None:
        self.name = name
        self.ipv4_dns = ["9.9.9.9"]
        self.ipv6_dns: list[str] = []
        self.delegated_prefix = ""


def test_overlay_puts_lease_data_on_live_state() -> None:
    states = [_State("eth0"), _State("lo")]
    overlay(states, {"eth0": LeaseData(["10.0.0.53"], ["2001:db8::53"], "2001:db8:7800::/56")})
    assert states[0].ipv4_dns == ["10.0.0.53"]
    assert states[0].ipv6_dns == ["2001:db8::53"]
    assert states[0].delegated_prefix == "2001:db8:7800::/56"
    assert states[1].ipv4_dns == ["9.9.9.9"]  # no lease data: the live answer stands


def test_dhcp4_info_classful_fallback_and_bad_options() -> None:
    from init.net import dhcp4

    info = dhcp4.info_from_ack({"yiaddr": "192.168.5.7", "options": {
        "router": ["not-an-ip", "192.168.5.1"], "name_server": "oops",
        "domain_name": "bad name\n", "interface_mtu": 17, "lease_time": -1}})
    assert info.address == ipaddress.IPv4Interface("192.168.5.7/24")
    assert info.routers == ("192.168.5.1",)
    assert info.dns == () and info.domain == "" and info.mtu is None
    assert info.lease_seconds is None  # -1: infinite


def test_interfaces_is_live_state_with_lease_data(tmp_path: Path) -> None:
    """What GetNetworkInfo gets in PID 1 mode: netinfo's live dump (read-only here) + leases."""
    import asyncio

    mgr = NetworkManager(NetSettings(wait=0, resolv_conf=tmp_path / "resolv.conf",
                                     interfaces=()))
    states = asyncio.run(mgr.interfaces())
    assert any(s.name == "lo" and s.loopback for s in states)
