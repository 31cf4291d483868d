"""Gossamer's own gRPC API between sidecars and the control plane (identity, registration).

`mesh.proto` is the source; `mesh_pb2*.py` are generated from it by `./dev protos`
(grpcio-tools) and checked in; a test fails if they are out of date.
"""
