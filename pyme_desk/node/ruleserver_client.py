"""The node server's line to the rule server: find it, keep finding it, call its endpoints.

The rule server is either given as a URL or found by discovery (``_pyme-taskdist`` services
whose name starts with ``PYMERuleServer`` or PYME's older ``PYMEDistributor``, protocol.md §1.2).
Unlike PYME's node server, which looks once when it starts, we look again whenever the one we
know stops answering, so a rule server that starts late or restarts (on another port) is found.

On first contact with a rule server the link asks for ``/node_heartbeat``: pyme-desk's rule
server answers (it keys leases on the ``nodeID`` that every later call then carries); PYME's
answers 404, and as it fails any request with a parameter it does not know, calls to it carry
no ``nodeID`` and no heartbeats are sent (:attr:`RuleServerLink.leases` is False).  Calls raise :class:`RuleServerUnavailable` for what a retry may cure (no rule
server known yet, connection refused, time-out, 5xx) and :class:`RuleServerRefused` for a 4xx
answer, which retrying the same request will not change.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import requests

from pyme_desk.discovery.sqlite_registry import ServiceRecord

log = logging.getLogger(__name__)

TASKDIST_PROTOCOL = "_pyme-taskdist"
RULE_SERVER_PREFIXES = ("PYMERuleServer", "PYMEDistributor")
#: How long a rule server that failed is passed over when another one is listed (s).
FAILED_PENALTY_S = 5.0


class RuleServerUnavailable(Exception):
    """No rule server is known, or the one known did not answer; worth retrying later."""


class RuleServerRefused(Exception):
    """The rule server answered a request with a 4xx status."""

    def __init__(self, path: str, status: int, reason: str) -> None:
        super().__init__(f"the rule server refused {path} ({status}): {reason}")
        self.path = path
        self.status = status
        self.reason = reason


def _base(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def pick_rule_server(records: list[ServiceRecord], failed: dict[str, float], now: float) -> str | None:
    """The URL of the rule server to use: the newest registered one that has not just failed."""
    servers = [r for r in records if r.name.startswith(RULE_SERVER_PREFIXES)]
    if not servers:
        return None
    fresh = [r for r in servers if now - failed.get(r.url, -1e9) > FAILED_PENALTY_S]
    best = max(fresh or servers, key=lambda r: r.creation_time)
    return best.url


class RuleServerLink:
    """Calls to one rule server at a time, found again when it goes away.

    ``url``: the rule server's base URL, or None to discover it (sqlite registry on this
    machine, plus zeroconf when ``use_zeroconf``).  ``node_id`` is sent with every call.
    """

    def __init__(self, url: str | None, node_id: str, *, use_zeroconf: bool = False,
                 timeout: float = 30.0, connect_timeout: float = 3.0) -> None:
        self.fixed_url = _base(url) if url else None
        self.node_id = node_id
        self.use_zeroconf = use_zeroconf
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._browser = None
        self._lock = threading.Lock()
        self._url: str | None = self.fixed_url
        self._failed: dict[str, float] = {}
        self._leases: dict[str, bool] = {}  # per rule server URL: does it keep leases (pyme-desk's)?
        #: the heartbeat interval the rule server asked for (s), once known
        self.heartbeat_interval: float | None = None
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._answering = False  # did the last call reach the rule server?
        self._warned = False  # has its silence been logged?

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self.fixed_url is None and self._browser is None:
            from pyme_desk.discovery.browser import ServiceBrowser

            self._browser = ServiceBrowser(TASKDIST_PROTOCOL, None, use_zeroconf=self.use_zeroconf,
                                           recheck_interval=2.0, probe_timeout=1.0)
            self._browser.start()

    def stop(self) -> None:
        if self._browser is not None:
            self._browser.stop()
            self._browser = None
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for s in sessions:
            s.close()

    # -- where ---------------------------------------------------------------------------------

    @property
    def url(self) -> str | None:
        """The rule server in use now (None until one is found)."""
        return self._url

    @property
    def leases(self) -> bool:
        """True when the rule server in use keeps leases (and wants heartbeats)."""
        url = self._url
        return url is not None and self._leases.get(url, False)

    @property
    def connected(self) -> bool:
        """True while the last call reached the rule server."""
        return self._answering

    def _resolve(self) -> str:
        with self._lock:
            if self._url is None and self._browser is not None:
                self._url = pick_rule_server(self._browser.services(), self._failed, time.monotonic())
                if self._url is not None:
                    log.info("found the rule server at %s", self._url)
            url = self._url
            if url is None:
                raise RuleServerUnavailable("no rule server found yet (looking for a "
                                            f"{RULE_SERVER_PREFIXES[0]} service on {TASKDIST_PROTOCOL})")
        if url not in self._leases:
            self._first_contact(url)
        return url

    def _first_contact(self, url: str) -> None:
        """Find out whether the rule server at ``url`` is pyme-desk's (leases) or PYME's."""
        answer = self._post(url, "node_heartbeat", {"nodeID": self.node_id}, None, 10.0)
        if answer.status_code == 404:
            log.info("the rule server at %s keeps no leases (a PYME rule server?): no heartbeats, "
                     "and its task time-out recovers the tasks of a lost node", url)
            self._leases[url] = False
            self._answered(url)
        elif answer.status_code == 200:
            self._leases[url] = True
            self._note_heartbeat(answer)
            self._answered(url)
        else:
            self._lost(url, f"HTTP {answer.status_code}")
            raise RuleServerUnavailable(f"the rule server at {url} answered node_heartbeat with "
                                        f"{answer.status_code}")

    def _note_heartbeat(self, answer: requests.Response) -> None:
        try:
            interval = answer.json().get("heartbeatInterval")
        except (ValueError, AttributeError):
            return
        if isinstance(interval, (int, float)) and 0.05 <= interval <= 60:
            self.heartbeat_interval = float(interval)

    def _answered(self, url: str) -> None:
        if self._warned:
            log.info("the rule server at %s answers again", url)
            self._warned = False
        self._answering = True

    def _lost(self, url: str, why: str) -> None:
        with self._lock:
            self._answering = False
            if not self._warned:
                log.warning("the rule server at %s is not answering (%s); looking for it again", url, why)
            self._warned = True
            self._failed[url] = time.monotonic()
            self._leases.pop(url, None)  # ask again: it may come back as another server
            if self.fixed_url is None and self._url == url:
                self._url = None

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    # -- calls ---------------------------------------------------------------------------------

    def call(self, endpoint: str, body: Any = None, *, timeout: float | None = None, **params: Any) -> Any:
        """POST ``endpoint`` with ``params`` (plus ``nodeID`` where the rule server keeps leases)
        and ``body`` as JSON; the parsed answer."""
        url = self._resolve()
        query = {"nodeID": self.node_id, **params} if self._leases.get(url) else params
        r = self._post(url, endpoint, query, body, timeout or self.timeout)
        if r.status_code >= 500:
            self._lost(url, f"HTTP {r.status_code}")
            raise RuleServerUnavailable(f"the rule server at {url} answered {endpoint} with {r.status_code}")
        if r.status_code >= 400:
            raise RuleServerRefused(endpoint, r.status_code, _reason(r))
        try:
            answer = r.json()
        except ValueError:
            self._lost(url, "an answer that is not JSON")
            raise RuleServerUnavailable(f"the rule server at {url} answered {endpoint} with "
                                        "something that is not JSON") from None
        if endpoint == "node_heartbeat":
            self._note_heartbeat(r)
        self._answered(url)
        return answer

    def _post(self, url: str, endpoint: str, query: dict, body: Any, timeout: float) -> requests.Response:
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            return self._session().post(url + endpoint, params=query, data=data, headers=headers,
                                        timeout=(self.connect_timeout, timeout))
        except requests.RequestException as e:
            self._lost(url, type(e).__name__)
            raise RuleServerUnavailable(f"the rule server at {url} did not answer {endpoint}: {e}") from None


def _reason(r: requests.Response) -> str:
    try:
        doc = r.json()
        if isinstance(doc, dict) and "error" in doc:
            return str(doc["error"])
    except ValueError:
        pass
    return r.text[:200] or r.reason
