"""The wire contract: everything both ends of the mesh's wires must agree on, once.

The control plane (`gossamer.control`), the sidecar (`gossamer.proxy`), the CA
(`gossamer.certs`) and the registry (`gossamer.discovery`) all import this package and
nothing here imports them (an import-linter contract in `./dev lint` keeps it so):

- `identity`: service keys, DNS-1123 names, SPIFFE IDs (format, parse, match), the SNI form.
- `xds`: xDS type URLs, the ADS method, resource names (clusters, listeners, routes,
  secrets) and the metadata keys the control plane and the sidecar exchange.
- `ports`: the well-known ports of a sidecar and of the control plane.
- `vocabulary`: the policy words of mesh.yaml and xDS as enums (load-balancing policies,
  port protocols, retry conditions, endpoint health).
- `rpc` and `mesh.proto`: Gossamer's own gRPC services (identity, registration).
"""
