"""Commands: worker (being written)."""
