"""Transitional: HTTPError now lives in :mod:`pyme_desk.web.errors` (imports are being moved)."""
from pyme_desk.web.errors import HTTPError

__all__ = ["HTTPError"]
