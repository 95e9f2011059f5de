"""``pyme-desk discover``: list the data servers (or rule/node servers) that can be found now.

Services are printed one per line (name, URL, source) as they are found, until the time-out;
``--json`` prints one JSON list at the end instead.  Without zeroconf the listing is complete
as soon as the sqlite registry and the static URLs have been checked, so it ends then.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading

from pyme_desk.config import Config
from pyme_desk.discovery.browser import ServiceBrowser
from pyme_desk.discovery.sqlite_registry import ServiceRecord
from pyme_desk.errors import UsageError

PROTOCOLS = ("_pyme-http", "_pyme-taskdist")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=PROTOCOLS, default="_pyme-http",
                        help="_pyme-http: data servers (default); _pyme-taskdist: rule and node servers")
    parser.add_argument("--filter", metavar="NAME", default=None,
                        help="only services whose name contains NAME, as PYME matches clusters "
                             "(default: all services)")
    parser.add_argument("--exact", action="store_true",
                        help="with --filter: the cluster name in brackets must equal NAME")
    parser.add_argument("--timeout", metavar="S", type=float, default=3.0,
                        help="how long to wait for zeroconf answers, in seconds (default 3)")
    parser.add_argument("--no-zeroconf", action="store_true",
                        help="only read this machine's registry and the static URLs from the config")
    parser.add_argument("--json", action="store_true", help="print one JSON list at the end")


def _static_urls(config: Config, protocol: str) -> list[str]:
    if protocol != "_pyme-http":
        return []
    urls = config.get("desk-static-dataservers") or []
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list):
        raise UsageError("config key desk-static-dataservers must be a list of http://host:port/ URLs")
    return [str(u) for u in urls]


def _as_json(record: ServiceRecord) -> dict:
    return {**dataclasses.asdict(record), "url": record.url}


def run(args: argparse.Namespace, config: Config) -> int:
    if args.timeout < 0:
        raise UsageError("--timeout must be zero or more seconds")
    printed: set[str] = set()
    print_lock = threading.Lock()

    def show_new(services: list[ServiceRecord]) -> None:
        with print_lock:
            for s in services:
                if s.name not in printed:
                    printed.add(s.name)
                    print(f"{s.name}\t{s.url}\t{s.source}", flush=True)

    try:
        browser = ServiceBrowser(args.protocol, args.filter, use_zeroconf=not args.no_zeroconf,
                                 static_urls=_static_urls(config, args.protocol),
                                 exact_filter=args.exact, on_change=None if args.json else show_new)
    except ValueError as e:
        raise UsageError(str(e)) from None
    browser.start()
    try:
        if args.no_zeroconf:
            browser.wait_scanned(timeout=max(args.timeout, browser.probe_timeout + 1.0))
        else:
            threading.Event().wait(args.timeout)
        services = browser.services()
    finally:
        browser.stop()
    if browser.zeroconf_error:
        print(f"pyme-desk discover: warning: {browser.zeroconf_error}", file=sys.stderr)
    with print_lock:
        if args.json:
            print(json.dumps([_as_json(s) for s in services], indent=2))
        elif not services:
            print(f"no {args.protocol} services found", file=sys.stderr)
    return 0
