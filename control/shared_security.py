"""What control-plane replicas share of the mesh's security, behind one small interface.

`SharedSecurity` is everything of the CA's state that must be the same on every
replica: join tokens (hashes, never secrets) and the instances they admitted, the
revocation list, the trust bundle, and the CRLs of every replica's intermediates.
control/security.py uses only this interface, so it does not care where that state is:

- `LocalSecurity` (the embedded store, one replica or replicas sharing a directory):
  today's files. Tokens in `<ca_dir>/tokens.json` with their uses in
  `<data_dir>/join-token-uses.json` (certs/tokens.py), the revocation list in
  `<data_dir>/revocations.json` (control/revocations.py); the trust bundle and CRLs are
  this CA directory's own.
- `EtcdSecurity` (control/etcd_security.py, `control.store: etcd://...`): the same in
  etcd beside the registry, followed by a watch, so a token made on one replica
  bootstraps a sidecar on another, a revocation on one is enforced by all, a root
  rotation published from the root's host reaches every replica, and each replica
  serves every replica's CRLs.

Reads are synchronous (from memory or files: revocation checks run on every mTLS call);
writes are coroutines (etcd transactions).
"""

from __future__ import annotations

import datetime as dt
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.token_rules import TokenRecord
from gossamer.certs.tokens import TokenStore
from gossamer.discovery.store import Store

from .config import ControlConfig
from .revocations import RevocationReader, RevocationStore


class SharedSecurity(ABC):
    revocations: RevocationReader
    between_replicas = False  # whether other replicas write it (with lineages of their own)
    on_change: Callable[[], None] = staticmethod(lambda: None)  # shared state changed

    @abstractmethod
    async def start(self) -> None:
        """Read the shared state and begin following it."""

    @abstractmethod
    async def close(self) -> None:
        """Stop following it."""

    # -- join tokens -------------------------------------------------------------------
    @abstractmethod
    def list_tokens(self) -> list[TokenRecord]: ...

    @abstractmethod
    async def create_token(
        self,
        service: str,
        ca_pin: str,
        *,
        namespace: str,
        ttl: float,
        uses: int,
        addresses: Sequence[str],
    ) -> tuple[str, TokenRecord]:
        """A new token (the string, returned once) and its record."""

    @abstractmethod
    async def redeem(
        self, token: str, *, instance: str, service: str | None, namespace: str | None
    ) -> TokenRecord:
        """Verify `token` and take one of its uses for `instance` (certs/tokens.py)."""

    @abstractmethod
    async def revoke_token(self, token_id: str) -> TokenRecord: ...

    async def announce_token_leaves_revoked(self, token_id: str, by: str) -> None:
        """Tell the other replicas to revoke the leaves they issued from `token_id`
        (each knows only its own: control/lineage.py)."""
        return None

    def token_leaves_revoked(self) -> dict[str, str]:
        """Tokens whose leaves every replica must revoke -> who asked."""
        return {}

    # -- trust bundle and CRLs ---------------------------------------------------------
    def trust_bundle(self, ca: CertificateAuthority) -> bytes:
        """The roots every sidecar must trust (PEM)."""
        return ca.trust_bundle_pem()

    def crls(self, own: dict[str, bytes], now: dt.datetime) -> bytes:
        """Every issuer's CRL (PEM): `own`, this replica's, and the others' if shared."""
        return b"".join(own[k] for k in sorted(own))

    @abstractmethod
    async def publish(self, ca: CertificateAuthority, own_crls: dict[str, bytes]) -> None:
        """Share this replica's CRLs (and the bundle, on the root's host), if shared."""

    def stamp(self) -> object:
        """Changes whenever the shared bundle or CRLs do."""
        return None


class LocalSecurity(SharedSecurity):
    """The files of one CA directory and one data directory."""

    def __init__(self, ca_dir: Path, data_dir: Path, *, max_token_ttl: float | None = None) -> None:
        # the instances tokens admitted are recorded in the data directory (the CA
        # directory may be a read-only Compose secret)
        self.tokens = TokenStore(ca_dir, max_ttl=max_token_ttl, uses_dir=data_dir)
        self.revocations = RevocationStore(data_dir)
        self.revocations.check()  # unreadable: a start-up error, not an empty list

    async def start(self) -> None:
        return None  # files need no following: their stamps are polled

    async def close(self) -> None:
        return None

    async def publish(self, ca: CertificateAuthority, own_crls: dict[str, bytes]) -> None:
        return None  # one CA directory: its CRLs are all there is

    def list_tokens(self) -> list[TokenRecord]:
        return self.tokens.list()

    async def create_token(
        self,
        service: str,
        ca_pin: str,
        *,
        namespace: str,
        ttl: float,
        uses: int,
        addresses: Sequence[str],
    ) -> tuple[str, TokenRecord]:
        return self.tokens.create(
            service, ca_pin, namespace=namespace, ttl=ttl, uses=uses, addresses=addresses
        )

    async def redeem(
        self, token: str, *, instance: str, service: str | None, namespace: str | None
    ) -> TokenRecord:
        return self.tokens.redeem(token, instance=instance, service=service, namespace=namespace)

    async def revoke_token(self, token_id: str) -> TokenRecord:
        return self.tokens.revoke(token_id)


def shared_for(store: Store, control: ControlConfig) -> SharedSecurity | None:
    """What replicas share, in etcd when the registry is there (control/etcd_security.py);
    None: the CA and data directories' files (`LocalSecurity`)."""
    etcd = sys.modules.get("gossamer.discovery.etcd")  # loaded if the store is etcd
    if etcd is None or not isinstance(store, etcd.EtcdStore):
        return None
    from .etcd_security import EtcdSecurity

    return EtcdSecurity(store, Path(control.ca_dir), max_token_ttl=control.max_token_ttl,
                        max_cert_ttl=control.max_cert_ttl,
                        data_dir=Path(control.data_dir))  # fmt: skip
