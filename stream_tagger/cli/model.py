"""Commands: model (being written)."""
