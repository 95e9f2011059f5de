"""Replication: keep every complete cluster file on at least N data servers (``pyme-desk replicate``)."""
from pyme_desk.replication.replicator import ReplicationError, Replicator, choose_targets

__all__ = ["Replicator", "ReplicationError", "choose_targets"]
