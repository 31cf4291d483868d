"""Gossamer's own gRPC services between sidecars and the control plane: names and paths.

`mesh.proto` is the source of the messages; `mesh_pb2*.py` are generated from it by
`./dev protos` (grpcio-tools) and checked in; a test fails if they are out of date.
The sidecar speaks these methods through its own small gRPC client (it does not load
grpcio); `grpcio_calls` binds them for grpcio servers and clients.
"""

from __future__ import annotations

IDENTITY = "gossamer.mesh.v1.Identity"
REGISTRATION = "gossamer.mesh.v1.Registration"
TAP = "gossamer.mesh.v1.Tap"
CERTIFY = f"/{IDENTITY}/Certify"
REGISTER = f"/{REGISTRATION}/Register"
TAP_WATCH = f"/{TAP}/Watch"
