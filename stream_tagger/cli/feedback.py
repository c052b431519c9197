"""Commands: feedback (being written)."""
