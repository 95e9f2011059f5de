"""Acquisition spooling: send image series into the cluster as PYME lays them out (protocol.md §4)."""
from pyme_desk.spool.spooler import (SpoolError, SpoolQueueFull, SpoolReport, Spooler, SpoolStats,
                                     frame_name)

__all__ = ["Spooler", "SpoolStats", "SpoolReport", "SpoolError", "SpoolQueueFull", "frame_name"]
