"""Commands: tools (being written)."""
