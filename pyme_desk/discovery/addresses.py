"""Which IPv4 address a server should advertise to other machines.

PYME advertises ``gethostbyname(gethostname())``, which is ``127.0.1.1`` on Debian-like systems
and so unreachable from anywhere else (protocol.md §1.8).  We take, in order: an address the
user gave; the address of the interface that holds the default route; the first address of an
interface that is up.  Loopback is returned only when nothing else exists, with a warning.
"""
from __future__ import annotations

import ipaddress
import socket

import psutil

#: A documentation-only address (TEST-NET-2, RFC 5737): "connecting" a UDP socket to it selects the
#: default-route interface without sending a packet.
_ROUTE_PROBE_TARGET = ("198.51.100.1", 9)

LOOPBACK_ONLY_WARNING = ("no network interface other than loopback was found; advertising 127.0.0.1, "
                         "so the service will only be reachable from this machine")


def is_loopback(addr: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``."""
    if addr.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr.strip()).is_loopback
    except ValueError:
        return False


def parse_ipv4(text: str) -> str:
    """The dotted-quad form of an IPv4 literal usable as a service address; ValueError otherwise."""
    try:
        addr = ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise ValueError(f"advertise address must be an IPv4 address such as 192.168.1.20, "
                         f"not {text!r}") from None
    if addr.is_unspecified or addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"advertise address {addr} cannot be reached as a service address; "
                         f"give the IPv4 address of a network interface")
    return str(addr)


def _usable(addr: str) -> bool:
    ip = ipaddress.IPv4Address(addr)
    return not (ip.is_loopback or ip.is_unspecified or ip.is_multicast)


def default_route_address() -> str | None:
    """The local address the system would use to reach the internet, or None (no route)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(_ROUTE_PROBE_TARGET)  # UDP connect only picks a route; nothing is sent
            addr = s.getsockname()[0]
    except OSError:
        return None
    return addr if _usable(addr) else None


def interface_addresses() -> list[str]:
    """IPv4 addresses of interfaces that are up, loopback excluded, link-local ones last."""
    stats = psutil.net_if_stats()
    found = []
    for nic, addrs in sorted(psutil.net_if_addrs().items()):
        if nic in stats and not stats[nic].isup:
            continue
        found += [a.address for a in addrs if a.family == socket.AF_INET and _usable(a.address)]
    return sorted(found, key=lambda a: ipaddress.IPv4Address(a).is_link_local)


def advertise_address(explicit: str | None = None) -> tuple[str, str | None]:
    """``(address, warning)``: the IPv4 address to advertise and, when it is loopback, why.

    ``explicit`` (e.g. from ``--advertise-address``) wins and must be an IPv4 literal
    (ValueError otherwise).  The warning is None unless the address is loopback.
    """
    if explicit is not None:
        addr = parse_ipv4(explicit)
        warning = (f"advertise address {addr} is a loopback address; the service will only be "
                   f"reachable from this machine") if is_loopback(addr) else None
        return addr, warning
    addr = default_route_address()
    if addr is None:
        candidates = interface_addresses()
        addr = candidates[0] if candidates else None
    if addr is None:
        return "127.0.0.1", LOOPBACK_ONLY_WARNING
    return addr, None
