"""Gossamer: a service mesh for Docker Compose.

This package holds the CLI, shared configuration and logging, compose injection and the
local runner. The mesh parts live in subpackages mapped from top-level folders:
`gossamer.certs`, `gossamer.discovery`, `gossamer.control` and `gossamer.proxy`.
"""

__version__ = "0.1.0"
