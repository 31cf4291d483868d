"""The mesh's shared security state in etcd, for control-plane replicas on several hosts.

With `control.store: etcd://...` every replica keeps in etcd, under `<prefix>.ca/`
(beside the registry's `<prefix>/`, outside its watch):

    tokens/<id>          a join token's record (the secret's SHA-256, never the secret)
    uses/<id>            the instance ids it admitted (JSON list)
    token-leaves-revoked/<id>   who revoked the token with its leaves: every replica
                         revokes the leaves it issued from it (leased: the longest
                         leaf lifetime)
    revoked/<serial>     a revoked leaf (control/revocations.py's entry), attached to an
                         etcd lease that ends after the leaf expires: etcd prunes it
    bundle               the trust bundle: every root sidecars must trust (PEM)
    crls/<issuer id>     the CRL of one replica's intermediate, signed by that replica

Theory of operation (docs/architecture.md, "Identity"):
- Reads come from an `EtcdMirror` of the prefix kept current by a watch; every change
  calls `on_change`, so the control plane republishes ROOTCA within milliseconds.
- A bootstrap reads the token and its uses from etcd itself (not the mirror) and takes
  a use with a compare-and-set transaction on `uses/<id>`, so two replicas never admit
  more instances than the token allows. Tokens in the CA directory's `tokens.json`
  (`gossamer token create --dir`, `gossamer inject`) are honoured too, their uses
  recorded here; revoking one writes a revoked copy here, which takes precedence.
- Each replica holds only its own intermediates' keys, so it signs only their CRLs
  (every revoked serial in each) and publishes them; it serves every replica's CRLs
  (certs/crl.py `merge_crls`) in ROOTCA, so its sidecars can check any peer's leaf.
  A revocation on one replica reaches the others through the watch; each signs its
  CRLs again and publishes them. A replica that is down cannot sign: its last CRLs
  stay valid (twice the longest leaf lifetime) and it signs again when it returns.
- The bundle is published by whoever holds the root: a control plane whose CA
  directory has the root keys (whenever its bundle differs), or `gossamer certs
  rotate-root --store` / `retire-root --store` on the root's host, and only over a
  bundle it shares a root with (`same_mesh`: a CA made by mistake never replaces the
  mesh's trust). A replica with only an intermediate publishes its own roots only when
  etcd has no bundle yet, and logs an error when the root it issues under is not in the
  shared bundle (its leaves would be refused).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from aetcd import rpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.ca_files import pem as cert_pem
from gossamer.certs.crl import format_serial, merge_crls
from gossamer.certs.token_rules import (
    TokenRecord,
    admit,
    check_presented,
    check_request,
    mint,
    parse_token,
)
from gossamer.certs.tokens import TokenStore
from gossamer.discovery.etcd import MAX_CAS_ATTEMPTS, EtcdStore
from gossamer.discovery.store import StoreUnavailable
from gossamer.errors import ConfigError, NotFound
from gossamer.logs import event

from .etcd_mirror import EtcdMirror
from .revocations import MAX_REASON, MAX_REVOCATIONS, Added, Revocation, Serials
from .shared_security import SharedSecurity

log = logging.getLogger("gossamer.control.etcd_security")

TOKENS, USES, REVOKED, BUNDLE, CRLS = b"tokens/", b"uses/", b"revoked/", b"bundle", b"crls/"
TOKEN_LEAVES = b"token-leaves-revoked/"
LEASE_MARGIN = 60.0  # seconds a revocation outlives its leaf in etcd


def shared_prefix(registry_prefix: str) -> bytes:
    """Where the shared CA state lives for a registry under `registry_prefix`."""
    return f"{registry_prefix}.ca/".encode()


def _record(raw: bytes, instances: tuple[str, ...] = ()) -> TokenRecord:
    return replace(TokenRecord.from_json(json.loads(raw)), instances=instances)


def _with_uses(record: TokenRecord, uses: bytes | None) -> TokenRecord:
    """The record with the instances etcd recorded added to those it has (a CA
    directory's token may have some from before the store was etcd)."""
    if uses is None:
        return record
    both = dict.fromkeys((*record.instances, *(str(i) for i in json.loads(uses))))
    return replace(record, instances=tuple(both))


class EtcdSecurity(SharedSecurity):
    between_replicas = True

    def __init__(
        self,
        store: EtcdStore,
        ca_dir: Path,
        *,
        max_token_ttl: float | None = None,
        max_cert_ttl: float = 24 * 3600.0,
        data_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.max_cert_ttl = max_cert_ttl
        self.prefix = shared_prefix(store.layout.prefix)
        self.mirror = EtcdMirror(store, self.prefix)
        # tokens made on the CA directory, with the uses recorded in the data directory
        # before the store was etcd (still counted: a token is never admitted afresh)
        self.files = TokenStore(ca_dir, uses_dir=data_dir)
        self.max_token_ttl = max_token_ttl
        self._clock = clock
        self.revocations = EtcdRevocations(self)
        self._warned: set[str] = set()

    async def start(self) -> None:
        self.mirror.on_change = self.on_change  # set by the control plane before start
        await self.mirror.start()

    async def close(self) -> None:
        await self.mirror.close()

    # -- etcd ------------------------------------------------------------------------
    async def _get(self, key: bytes) -> Any:
        client = self.store.client
        return await self.store.call("read", lambda: client.get(self.prefix + key))

    async def _put_if(self, key: bytes, value: bytes, mod: int | None, lease: int = 0) -> bool:
        """Put `value` at `key` if it is unchanged since read (mod revision `mod`; None:
        if it does not exist); the mirror learns it at once."""
        t = self.store.client.transactions
        full = self.prefix + key
        guard = t.create(full) == 0 if mod is None else t.mod(full) == mod
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=full, value=value, lease=lease))
        ok, response = await self.store.call(
            "write", functools.partial(self.store.txn, [guard], [put])
        )
        if ok:
            self.mirror.apply(key, value, int(response.header.revision))
        return ok

    async def _put(self, key: bytes, value: bytes) -> None:
        client = self.store.client
        result = await self.store.call("write", lambda: client.put(self.prefix + key, value))
        self.mirror.apply(key, value, int(result.header.revision))

    # -- join tokens -------------------------------------------------------------------
    def list_tokens(self) -> list[TokenRecord]:
        records = {r.token_id: r for r in self.files.list()}
        for token_id, raw in self.mirror.items(TOKENS).items():
            records[token_id.decode()] = _record(raw)
        uses = self.mirror.items(USES)
        out = [_with_uses(r, uses.get(r.token_id.encode())) for r in records.values()]
        return sorted(out, key=lambda r: r.created)

    async def _fresh(self, token_id: str) -> TokenRecord | None:
        kv = await self._get(TOKENS + token_id.encode())
        if kv is not None:
            return _record(kv.value)
        return {r.token_id: r for r in self.files.list()}.get(token_id)

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
        allowed = check_request([service], namespace=namespace, ttl=ttl, uses=uses,
                                addresses=addresses, max_ttl=self.max_token_ttl)  # fmt: skip
        for _ in range(MAX_CAS_ATTEMPTS):
            taken = {r.token_id: r for r in self.list_tokens()}
            token, record = mint(service, ca_pin, namespace=namespace, now=self._clock(),
                                 ttl=ttl, uses=uses, addresses=allowed, taken=taken)  # fmt: skip
            body = json.dumps(asdict(record)).encode()
            if await self._put_if(TOKENS + record.token_id.encode(), body, None):
                return token, record
        raise StoreUnavailable("could not store a new join token (ids kept colliding)")

    async def redeem(
        self, token: str, *, instance: str, service: str | None, namespace: str | None
    ) -> TokenRecord:
        parsed = parse_token(token)
        record = check_presented(await self._fresh(parsed.token_id), parsed, self._clock(),
                                 service=service, namespace=namespace)  # fmt: skip
        key = USES + record.token_id.encode()
        for _ in range(MAX_CAS_ATTEMPTS):
            kv = await self._get(key)
            current = _with_uses(record, kv.value if kv else None)
            admitted = admit(current, instance)
            if admitted is None:
                return current
            body = json.dumps(list(admitted.instances)).encode()
            if await self._put_if(key, body, None if kv is None else int(kv.mod_revision)):
                return admitted
        raise StoreUnavailable(f"taking a use of join token {record.token_id} kept conflicting")

    async def revoke_token(self, token_id: str) -> TokenRecord:
        record = await self._fresh(token_id)
        if record is None:
            raise NotFound(f"no join token with id {token_id}", hint="see gossamer token list")
        revoked = replace(record, revoked=True, instances=())
        await self._put(TOKENS + token_id.encode(), json.dumps(asdict(revoked)).encode())
        return revoked

    async def announce_token_leaves_revoked(self, token_id: str, by: str) -> None:
        lease = await self.store.grant_lease(self.max_cert_ttl + LEASE_MARGIN)
        body = json.dumps({"by": by}).encode()
        await self._put_if(TOKEN_LEAVES + token_id.encode(), body, None, lease=lease)

    def token_leaves_revoked(self) -> dict[str, str]:
        out = {}
        for token_id, raw in self.mirror.items(TOKEN_LEAVES).items():
            try:
                out[token_id.decode()] = str(json.loads(raw).get("by", ""))
            except (ValueError, AttributeError):
                continue
        return out

    # -- trust bundle and CRLs ---------------------------------------------------------
    def trust_bundle(self, ca: CertificateAuthority) -> bytes:
        return self.mirror.values.get(BUNDLE) or ca.trust_bundle_pem()

    def crls(self, own: dict[str, bytes], now: dt.datetime) -> bytes:
        shared = {k.decode(): v for k, v in self.mirror.items(CRLS).items()}
        return merge_crls(own, shared, now)

    async def publish(self, ca: CertificateAuthority, own_crls: dict[str, bytes]) -> None:
        local = ca.trust_bundle_pem()
        shared = self.mirror.values.get(BUNDLE)
        if shared is None:
            await self._put_if(BUNDLE, local, None)
        elif ca.holds_root_key and shared != local:
            if same_mesh(shared, local):
                await self._put(BUNDLE, local)
                event(log, logging.INFO, "published the trust bundle for every replica",
                      roots=len(ca.roots()))  # fmt: skip
            else:
                self._warn_once("foreign", "this CA's roots share none with the mesh's "
                                "trust bundle in etcd: not publishing them",
                                ca_dir=str(ca.directory))  # fmt: skip
        issuing = cert_pem(ca.roots()[ca.issuing_generation()])
        if shared is not None and issuing not in shared:
            self._warn_once("untrusted", "the root this replica issues under is not in the "
                            "mesh's trust bundle: peers will refuse its leaves",
                            ca_dir=str(ca.directory),
                            hint="issue this replica's intermediate from the mesh root, or "
                            "publish the bundle: gossamer certs bundle --store URL")  # fmt: skip
        for issuer, pem in own_crls.items():
            key = CRLS + issuer.encode()
            if self.mirror.values.get(key) != pem:
                await self._put(key, pem)

    def stamp(self) -> object:
        return self.mirror.revision

    def _warn_once(self, key: str, message: str, **fields: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            event(log, logging.ERROR, message, **fields)


def same_mesh(shared: bytes, local: bytes) -> bool:
    """Whether a bundle may replace the shared one: they have a root in common (a
    rotation adds one, a retirement removes one), so a CA made by mistake (an empty
    ca_dir, another mesh's) never replaces every replica's trust."""
    try:
        old = {c.fingerprint(hashes.SHA256()) for c in x509.load_pem_x509_certificates(shared)}
        new = {c.fingerprint(hashes.SHA256()) for c in x509.load_pem_x509_certificates(local)}
    except ValueError:
        return True  # what etcd holds is not a bundle at all: replace it
    return bool(old & new)


class EtcdRevocations:
    """The revocation list in etcd (a RevocationReader), read from the mirror."""

    def __init__(self, shared: EtcdSecurity) -> None:
        self.shared = shared
        self._cache: tuple[int, dict[str, Revocation]] = (-1, {})

    def _entries(self) -> dict[str, Revocation]:
        mirror = self.shared.mirror
        if self._cache[0] != mirror.revision:
            entries = {}
            for key, raw in mirror.items(REVOKED).items():
                try:
                    entries[key.decode()] = Revocation(**json.loads(raw))
                except (ValueError, TypeError) as exc:
                    event(log, logging.ERROR, "ignored a malformed revocation in etcd",
                          key=key.decode(errors="replace"), error=str(exc))  # fmt: skip
            self._cache = (mirror.revision, entries)
        return self._cache[1]

    def stamp(self) -> object:
        return tuple(sorted(self._entries()))

    def list(self, at: float | None = None) -> list[Revocation]:
        when = self.shared._clock() if at is None else at
        live = (e for e in self._entries().values() if e.not_after > when)
        return sorted(live, key=lambda e: (e.revoked_at, e.serial))

    def is_revoked(self, serial: int) -> bool:
        entry = self._entries().get(format_serial(serial))
        return entry is not None and entry.not_after > self.shared._clock()

    def prune(self, before: float | None = None) -> int:
        return 0  # each entry's etcd lease ends after its leaf expires

    async def add(self, serials: Serials, *, reason: str, by: str) -> Added:
        now = self.shared._clock()
        live = {k for k, e in self._entries().items() if e.not_after > now}
        adding = {format_serial(s[0]) for s in serials} - live
        if len(live) + len(adding) > MAX_REVOCATIONS:
            raise ConfigError(
                f"the revocation list holds {len(live)} revoked certificates not yet "
                f"expired; {len(adding)} more would pass its limit of {MAX_REVOCATIONS:,}",
                field="serial",
            )
        out: Added = []
        entries, lease, used = self._entries(), 0, False
        for serial, not_after, spiffe_id, token_id in serials:
            key = format_serial(serial)
            known = entries.get(key)
            if known is not None and known.not_after > now:
                out.append((known, False))  # an already revoked serial keeps its entry
                continue
            if not lease:  # one lease for the batch, ending after its last leaf expires
                longest = max(s[1] for s in serials)
                lease = await self.shared.store.grant_lease(max(1.0, longest - now + LEASE_MARGIN))
            entry = Revocation(key, reason[:MAX_REASON], now, by, not_after, spiffe_id, token_id)
            body = json.dumps(asdict(entry)).encode()
            if await self.shared._put_if(REVOKED + key.encode(), body, None, lease=lease):
                out.append((entry, True))
                used = True
                continue
            kv = await self.shared._get(REVOKED + key.encode())  # another replica's, just now
            out.append((Revocation(**json.loads(kv.value)) if kv else entry, False))
        if lease and not used:
            await self.shared.store.revoke_lease(lease)
        return out


async def publish_bundle(store_url: str, bundle: bytes, *, data_dir: Path) -> None:
    """Put the root host's trust bundle in etcd for every replica (`certs rotate-root
    --store`, `retire-root --store`)."""
    from gossamer.discovery.stores import open_store, parse_store_url

    if parse_store_url(store_url).kind != "etcd":
        raise ConfigError(
            f"--store {store_url}: the bundle is shared through etcd only",
            hint="pass the replicas' control.store, etcd://HOST:PORT[,...][/prefix]",
        )
    store = open_store(store_url, data_dir=data_dir)
    assert isinstance(store, EtcdStore)
    await store.start()
    try:
        client = store.client
        key = shared_prefix(store.layout.prefix) + BUNDLE
        current = await store.call("read", lambda: client.get(key))
        if current is not None and not same_mesh(current.value, bundle):
            raise ConfigError(
                f"the trust bundle in {store_url} shares no root with this CA's: it is "
                "another mesh's, or this is not the mesh's root CA",
                hint="run this on the host holding the mesh's root (--dir ROOT_CA)",
            )
        await store.call("write", lambda: client.put(key, bundle))
    finally:
        await store.close()
