"""Thin confluent-kafka plumbing for the hot path: client configuration and topic administration."""
