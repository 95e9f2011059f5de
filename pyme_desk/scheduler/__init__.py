"""Task distribution: the rule server that hands analysis tasks to node servers (protocol.md §7)."""
