"""Default bounds on connections and timeouts, in one place for the CLI and the components.

The `gossamer proxy` and `gossamer control` flags show these as their defaults, and the
sidecar's listener limits (`proxy/listeners/limits.py`) and the operator API's limits
(`control/api_limits.py`) fall back to them. This module imports nothing, so the CLI can
read it without loading the proxy or aiohttp. README, "Security" > "Limits", lists them.
"""

from __future__ import annotations

# The sidecar's listeners
MAX_INBOUND_CONNECTIONS = 4096  # peers over mTLS; at the cap, unproven ones are displaced
MAX_OUTBOUND_CONNECTIONS = 4096  # the local app; at the cap, newcomers are closed
MAX_ADMIN_CONNECTIONS = 128  # probes and scrapes; at the cap, the oldest is displaced
HANDSHAKE_TIMEOUT = 10.0  # seconds from accept to a finished inbound TLS handshake
PIPELINED_REQUESTS = 16  # HTTP/1.1 requests parsed and not yet answered, per connection
H2_MAX_CONCURRENT_STREAMS = 256  # HTTP/2 streams in progress per downstream connection

# The control plane's operator API
API_MAX_CONNECTIONS = 256
API_FD_RESERVE = 512  # file descriptors the API leaves for xDS, bootstrap, CA and store
API_HEADER_TIMEOUT = 10.0
API_IDLE_TIMEOUT = 60.0
API_BODY_TIMEOUT = 30.0
