"""Helpers shared by tests: real servers, certificates, clients."""
