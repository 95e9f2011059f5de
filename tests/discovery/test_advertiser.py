"""Advertising a server: the zeroconf record we would publish, the sqlite row, and the refusals.

Real multicast is never sent in tests: the zeroconf mode is checked through the ServiceInfo it
builds and through the refusals that happen before any socket is opened.
"""
from __future__ import annotations

import socket

import pytest

from pyme_desk.discovery.advertiser import Advertiser, build_service_info, service_type
from pyme_desk.discovery.browser import record_from_service_info
from pyme_desk.discovery.sqlite_registry import SqliteRegistry

NAME = "PYMEDataServer [lab]:pc1 - PID:42"


def test_service_info_is_what_pyme_clients_expect():
    info = build_service_info("_pyme-http", NAME, "192.168.1.20", 15348)
    assert info.type == "_pyme-http._tcp.local." == service_type("_pyme-http")
    assert info.name == f"{NAME}._pyme-http._tcp.local."
    assert info.addresses == [socket.inet_aton("192.168.1.20")]
    assert info.port == 15348
    assert (info.weight, info.priority) == (0, 0)
    assert info.properties == {}


def test_browser_reads_back_the_advertised_record():
    info = build_service_info("_pyme-taskdist", "PYMERuleServer:pc1 - PID:7", "10.0.0.5", 15346)
    record = record_from_service_info(info, seen_at=12.5)
    assert (record.name, record.address, record.port, record.source, record.creation_time) == (
        "PYMERuleServer:pc1 - PID:7", "10.0.0.5", 15346, "zeroconf", 12.5)
    assert record.url == "http://10.0.0.5:15346/"


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.1.1"])
def test_zeroconf_refuses_loopback(address):
    adv = Advertiser("_pyme-http", NAME, 15348, "zeroconf", address)
    with pytest.raises(ValueError, match="loopback"):
        adv.start()
    assert adv.address is None
    adv.stop()


def test_zeroconf_refuses_a_non_ipv4_address():
    with pytest.raises(ValueError, match="IPv4"):
        Advertiser("_pyme-http", NAME, 15348, "zeroconf", "pc1.local").start()


def test_local_mode_registers_loopback_row_and_stop_removes_it(tmp_path):
    reg = SqliteRegistry("_pyme-http", tmp_path)
    adv = Advertiser("_pyme-http", NAME, 40001, "local", "10.0.0.5", sqlite_directory=tmp_path)
    with adv:
        assert adv.address == "127.0.0.1"
        assert [(s.name, s.address, s.port) for s in reg.services()] == [(NAME, "127.0.0.1", 40001)]
    assert reg.services() == []
    adv.stop()  # idempotent
    assert reg.services() == []


def test_local_mode_uses_the_protocol_file(tmp_path):
    with Advertiser("_pyme-taskdist", "PYMERuleServer:pc1 - PID:7", 15346, "local", None,
                    sqlite_directory=tmp_path):
        assert (tmp_path / "_pyme-taskdist.sqlite").exists()
        assert not (tmp_path / "_pyme-http.sqlite").exists()


def test_none_mode_advertises_nothing(tmp_path):
    with Advertiser("_pyme-http", NAME, 40001, "none", None, sqlite_directory=tmp_path) as adv:
        assert adv.address is None
    assert list(tmp_path.iterdir()) == []


def test_bad_mode_and_port_are_refused():
    with pytest.raises(ValueError, match="unknown advertisement mode"):
        Advertiser("_pyme-http", NAME, 40001, "mdns", None)
    with pytest.raises(ValueError, match="actually bound"):
        Advertiser("_pyme-http", NAME, 0, "local", None)
