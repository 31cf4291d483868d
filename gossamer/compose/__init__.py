"""Compose integration: gossamer inject and uninject."""
