"""Choosing the address to advertise: never loopback on the network unless it is all there is."""
from __future__ import annotations

import ipaddress
import socket
from types import SimpleNamespace

import psutil
import pytest

from pyme_desk.discovery import addresses
from pyme_desk.discovery.addresses import advertise_address, interface_addresses, is_loopback


def test_chosen_address_is_loopback_only_with_a_warning():
    addr, warning = advertise_address()
    ipaddress.IPv4Address(addr)
    if is_loopback(addr):
        assert warning and "only be reachable from this machine" in warning
    else:
        assert warning is None


def test_explicit_address_wins():
    assert advertise_address(" 10.20.30.40 ") == ("10.20.30.40", None)


def test_explicit_loopback_is_kept_but_warned():
    addr, warning = advertise_address("127.0.1.1")
    assert addr == "127.0.1.1"
    assert "only be reachable from this machine" in warning


@pytest.mark.parametrize("bad", ["myhost.local", "::1", "10.0.0", "0.0.0.0", "224.0.0.251", ""])
def test_explicit_address_must_be_a_usable_ipv4_literal(bad):
    with pytest.raises(ValueError, match="advertise address"):
        advertise_address(bad)


def test_loopback_only_machine_gets_127_with_warning(monkeypatch):
    monkeypatch.setattr(addresses, "default_route_address", lambda: None)
    lo = SimpleNamespace(family=socket.AF_INET, address="127.0.0.1")
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: {"lo": [lo]})
    assert interface_addresses() == []
    addr, warning = advertise_address()
    assert addr == "127.0.0.1"
    assert "only be reachable from this machine" in warning


def test_interface_enumeration_skips_loopback_and_down_and_prefers_routable(monkeypatch):
    def addr(a):
        return SimpleNamespace(family=socket.AF_INET, address=a)

    def stats(up):
        return SimpleNamespace(isup=up)

    monkeypatch.setattr(psutil, "net_if_addrs", lambda: {
        "a0": [addr("169.254.3.4")], "b0": [addr("10.1.2.3")], "c0": [addr("192.168.9.9")], "lo": [addr("127.0.0.1")]})
    monkeypatch.setattr(psutil, "net_if_stats", lambda: {
        "a0": stats(True), "b0": stats(True), "c0": stats(False), "lo": stats(True)})
    monkeypatch.setattr(addresses, "default_route_address", lambda: None)
    assert interface_addresses() == ["10.1.2.3", "169.254.3.4"]
    assert advertise_address() == ("10.1.2.3", None)


def test_default_route_address_is_never_loopback():
    addr = addresses.default_route_address()
    assert addr is None or not is_loopback(addr)


@pytest.mark.parametrize("addr, expected", [
    ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("localhost", True), ("LocalHost", True),
    ("10.0.0.1", False), ("192.168.1.2", False), ("myhost", False)])
def test_is_loopback(addr, expected):
    assert is_loopback(addr) is expected
