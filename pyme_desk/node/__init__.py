"""Node server and workers: win analysis tasks from the rule server and run them (protocol.md §8)."""
