"""Thin confluent-kafka plumbing: client configuration (and its logger) and topic administration."""
