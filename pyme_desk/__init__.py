"""pyme-desk: run and watch a PYME-style analysis cluster."""

__version__ = "0.1.0"
