"""What the user asked `gossamer inject` for: `InjectOptions`, checked when made.

The options are recorded in the injected file (`marker`), so a re-run compares them;
the multi-node ones (`node`, `join`, ...) are checked by `multinode.check_options`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gossamer.compose import multinode, names
from gossamer.errors import UsageError

MODES = ("transparent", "explicit")
BOOTSTRAPS = ("files", "volumes")
GATEWAY_PORT = multinode.GATEWAY_PORT
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class InjectOptions:
    """What the user asked for; recorded in the output so a re-run can compare."""

    mode: str = "transparent"
    only: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    observability: bool = False
    image: str = names.DEFAULT_IMAGE
    namespace: str = "default"
    proxy_env: bool = True
    # transparent mode: the app's DNS goes to its sidecar, which answers the names of
    # mesh services on other nodes (`--no-dns-capture`: it goes to Docker's DNS alone)
    dns_capture: bool = True
    # files: CA and tokens made now under .gossamer/ (Compose secrets); volumes: made by
    # a one-shot service at `docker compose up`, in named volumes (nothing on the host)
    bootstrap: str = "files"
    trust_domain: str | None = None  # volumes: the CA's trust domain (default gossamer.local)
    # several hosts (compose/multinode.py): this host's node name and reachable address,
    # the existing mesh's control planes to join, a local replica, the etcd store
    node: str | None = None
    join: tuple[str, ...] = ()
    advertise_host: str | None = None
    gateway_port: int = GATEWAY_PORT
    control_replica: bool = False
    etcd: str | None = None  # etcd://... : the control plane's store (default embedded)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"unknown mode {self.mode!r}", hint="use transparent or explicit")
        if self.bootstrap not in BOOTSTRAPS:
            raise UsageError(f"unknown bootstrap {self.bootstrap!r}", hint="use files or volumes")
        if self.trust_domain is not None and self.bootstrap != "volumes":
            raise UsageError("a recorded trust domain applies to --bootstrap volumes only")
        if not _DNS_LABEL.match(self.namespace):
            raise UsageError(
                f"invalid namespace {self.namespace!r}",
                hint="a DNS-1123 label: lowercase letters, digits and '-'",
            )
        both = sorted(set(self.only) & set(self.exclude))
        if both:
            raise UsageError(f"{', '.join(both)} both in --only and --exclude")
        if not self.image.strip():
            raise UsageError("--image must not be empty")
        object.__setattr__(self, "only", tuple(sorted(set(self.only))))
        object.__setattr__(self, "exclude", tuple(sorted(set(self.exclude))))
        multinode.check_options(self)
