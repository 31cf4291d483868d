"""grpcio channel settings for tests that talk to the control plane with grpcio.

The sidecar itself uses its own small gRPC client; these reproduce its mutual TLS for
grpcio: the control plane is verified as `gossamer-control` whatever address it has.
"""

from __future__ import annotations

from typing import Any

import grpc

from gossamer.contract.identity import CONTROL_TLS_NAME
from gossamer.proxy.agent.bootstrap import WorkloadCredentials

GRPC_TLS_OPTIONS = (("grpc.ssl_target_name_override", CONTROL_TLS_NAME),)


def mtls_channel_credentials(current: WorkloadCredentials) -> Any:
    """grpcio channel credentials for the same mutual TLS as a sidecar's."""
    return grpc.ssl_channel_credentials(
        root_certificates=current.bundle_pem,
        private_key=current.key_pem,
        certificate_chain=current.chain_pem,
    )
