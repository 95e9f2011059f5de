"""Make a running server findable: on the network (zeroconf), on this machine (sqlite), or not at all.

The advertisement is what PYME clients look for (protocol.md §1.1, §1.7):

* ``zeroconf``: the instance ``<name>.<protocol>._tcp.local.`` with one IPv4 address, the bound
  port, weight and priority 0 and no TXT properties.  Zeroconf is bound to the interface of the
  advertised address.  A loopback address is refused: other machines could not reach it.
* ``local``: a row ``(name, 127.0.0.1, port)`` in the same-machine sqlite registry.
* ``none``: nothing.

Usage: ``Advertiser("_pyme-http", service_name(...), port, "zeroconf", None).start()`` once the
server listens; ``stop()`` when it shuts down (also usable as a context manager).
"""
from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

from zeroconf import IPVersion, NonUniqueNameException, ServiceInfo, Zeroconf

from pyme_desk.discovery.addresses import advertise_address, is_loopback
from pyme_desk.discovery.sqlite_registry import SqliteRegistry

log = logging.getLogger(__name__)

MODES = ("zeroconf", "local", "none")

#: The address a ``local`` advertisement carries: the server binds loopback only.
LOCAL_ADDRESS = "127.0.0.1"


def service_type(protocol: str) -> str:
    """``_pyme-http`` -> ``_pyme-http._tcp.local.``"""
    return f"{protocol}._tcp.local."


def build_service_info(protocol: str, name: str, address: str, port: int) -> ServiceInfo:
    """The zeroconf record PYME clients expect for service ``name`` at ``address:port``."""
    type_ = service_type(protocol)
    return ServiceInfo(type_, f"{name}.{type_}", addresses=[socket.inet_aton(address)], port=port,
                       weight=0, priority=0, properties={})


class Advertiser:
    """Advertise one service until :meth:`stop`.

    ``mode`` is ``zeroconf``, ``local`` or ``none``; ``address`` is the IPv4 address to advertise in
    zeroconf mode (None: the default-route interface, see :func:`advertise_address`); it is
    ignored in the other modes.  ``port`` must be the port actually bound.
    """

    def __init__(self, protocol: str, name: str, port: int, mode: str, address: str | None = None,
                 *, sqlite_directory: str | Path | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown advertisement mode {mode!r}; use one of {', '.join(MODES)}")
        if not 0 < int(port) < 65536:
            raise ValueError(f"cannot advertise port {port}: pass the port the server actually bound")
        self.protocol = protocol
        self.name = name
        self.port = int(port)
        self.mode = mode
        self.requested_address = address
        self.sqlite_directory = sqlite_directory
        #: The address advertised once started (None in mode ``none`` or before start()).
        self.address: str | None = None
        self._zeroconf: Zeroconf | None = None
        self._info: ServiceInfo | None = None
        self._registry: SqliteRegistry | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Publish the advertisement. Raises ValueError for an address that cannot be advertised,
        for a name already advertised on the network, and RegistryError if sqlite cannot be written."""
        with self._lock:
            if self.address is not None or self.mode == "none":
                return
            if self.mode == "local":
                registry = SqliteRegistry(self.protocol, self.sqlite_directory)
                registry.register(self.name, LOCAL_ADDRESS, self.port)
                self._registry, self.address = registry, LOCAL_ADDRESS
            else:
                self._start_zeroconf()

    def _start_zeroconf(self) -> None:
        address, warning = advertise_address(self.requested_address)
        if is_loopback(address):
            raise ValueError(
                f"refusing to advertise {address} on zeroconf: it is a loopback address that other "
                f"machines cannot reach ({warning or 'choose a network interface address'}); pass "
                f"the machine's LAN address as the advertise address, or use 'local' advertisements")
        info = build_service_info(self.protocol, self.name, address, self.port)
        zc = Zeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
        try:
            zc.register_service(info)
        except NonUniqueNameException:
            zc.close()
            raise ValueError(f"a service named {self.name!r} is already advertised on this network") from None
        except BaseException:
            zc.close()
            raise
        self._zeroconf, self._info, self.address = zc, info, address
        log.info("advertising %s at %s:%d on zeroconf", self.name, address, self.port)

    def stop(self) -> None:
        """Withdraw the advertisement; calling it again (or before start) does nothing."""
        with self._lock:
            zc, info, registry = self._zeroconf, self._info, self._registry
            self._zeroconf = self._info = self._registry = None
            self.address = None
        if registry is not None:
            try:
                registry.unregister(self.name)
            except Exception as e:  # a shutdown must finish; the stale row is pruned by clients later
                log.warning("could not remove %s from %s: %s", self.name, registry.path, e)
        if zc is not None:
            try:
                if info is not None:
                    zc.unregister_service(info)
            except Exception as e:  # the goodbye packet is a courtesy; the record expires anyway
                log.warning("could not withdraw %s from zeroconf: %s", self.name, e)
            finally:
                try:
                    zc.close()
                except Exception as e:  # a shutdown must finish
                    log.warning("could not close zeroconf for %s: %s", self.name, e)

    def __enter__(self) -> "Advertiser":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_advertiser(protocol: str, name: str, port: int, mode: str,
                     address: str | None = None) -> Advertiser | None:
    """A started :class:`Advertiser` for a server that just bound ``port``, or None in mode
    ``none``.  Its ``stop()`` never raises, so servers call it on the way out unguarded."""
    if mode == "none":
        return None
    advertiser = Advertiser(protocol, name, port, mode, address)
    advertiser.start()
    return advertiser
