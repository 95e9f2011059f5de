"""Service names as PYME clients match them (protocol.md §1.2)."""
from __future__ import annotations

from pyme_desk.names import dataserver_process_name, service_name


def test_short_name_is_not_cut():
    assert service_name(dataserver_process_name("lab"), "pc1", 42) == "PYMEDataServer [lab]:pc1 - PID:42"


def test_long_name_is_cut_to_63_characters_keeping_the_pid():
    name = service_name(dataserver_process_name("a-very-long-cluster-name-" * 3), "workstation-07", 1234567)
    assert len(name) == 63
    assert name.endswith("PID:1234567")
    assert name.startswith("PYMEDataServer [a-very-long-cluster-name-")
