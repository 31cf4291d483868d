"""Bytes on the wire: TLS, HTTP/1.1 and HTTP/2 connections and pools, the sidecar's small gRPC client."""
