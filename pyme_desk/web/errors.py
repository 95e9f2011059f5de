"""The one exception a data-server handler raises to answer with a 4xx/5xx JSON error."""
from __future__ import annotations


class HTTPError(Exception):
    """Answer the request with ``status`` and the JSON body ``{"error": reason}``."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason
