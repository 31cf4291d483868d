"""The replicas' shared security state on a real etcd (control/etcd_security.py), two
`EtcdSecurity` instances standing for two replicas: a token's uses are never
over-admitted when both redeem at once, and revocations, CRLs and the bundle one writes
reach the other through the watch; a CA directory's token keeps the uses recorded in
the data directory before the store was etcd."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path

import pytest

from gossamer.certs import crl
from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.errors import TokenUsedUp
from gossamer.certs.intermediates import issue_local
from gossamer.certs.tokens import TokenStore
from gossamer.control.etcd_security import EtcdSecurity
from gossamer.discovery.etcd import EtcdStore
from gossamer.discovery.stores import open_store
from tests.helpers.etcd import EtcdCluster

pytestmark = pytest.mark.e2e


async def replica(url: str, ca_dir: Path, tmp: Path) -> EtcdSecurity:
    store = open_store(url, data_dir=tmp)
    assert isinstance(store, EtcdStore)
    await store.start()
    shared = EtcdSecurity(store, ca_dir)
    await shared.start()
    return shared


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not seen in time"
        await asyncio.sleep(0.02)


async def test_two_replicas_share_tokens_revocations_crls_and_bundle(
    tmp_path: Path, shared_etcd: EtcdCluster
):
    root = CertificateAuthority.init(tmp_path / "root", "gossamer.local")
    ca_a = issue_local(root, tmp_path / "a", "node-a")
    ca_b = issue_local(root, tmp_path / "b", "node-b")
    url = shared_etcd.store_url("/shared-security")
    a = await replica(url, ca_a.directory, tmp_path)
    b = await replica(url, ca_b.directory, tmp_path)
    try:
        # 12 instances race for a token admitting 3, half through each replica
        token, _ = await a.create_token("web", root.root_pin(), namespace="default",
                                        ttl=600, uses=3, addresses=())  # fmt: skip

        async def redeem(i: int) -> bool:
            shared = a if i % 2 else b
            try:
                await shared.redeem(token, instance=f"i-{i}", service="web", namespace=None)
            except TokenUsedUp:
                return False
            return True

        admitted = await asyncio.gather(*(redeem(i) for i in range(12)))
        assert sum(admitted) == 3
        await until(lambda: [len(r.instances) for r in b.list_tokens()] == [3])

        # a CA directory's token used before the store was etcd stays used
        files = TokenStore(ca_a.directory, uses_dir=tmp_path / "data-a")
        old, _ = files.create("web", root.root_pin(), namespace="default", ttl=600)
        files.redeem(old, instance="old-1")
        upgraded = EtcdSecurity(a.store, ca_a.directory, data_dir=tmp_path / "data-a")
        await upgraded.start()
        with pytest.raises(TokenUsedUp):
            await upgraded.redeem(old, instance="new-1", service=None, namespace=None)
        await upgraded.redeem(old, instance="old-1", service=None, namespace=None)  # a restart
        await upgraded.close()

        # a revocation on A is seen by B
        await a.revocations.add([(0xABC, 4e9, "spiffe://x", "")], reason="test", by="t")
        await until(lambda: b.revocations.is_revoked(0xABC))
        again = await b.revocations.add([(0xABC, 4e9, "", "")], reason="again", by="t")
        assert [(e.reason, new) for e, new in again] == [("test", False)]

        # each publishes its own CRL; each serves both
        now = dt.datetime.now(dt.UTC)
        own = {}
        for shared, ca in ((a, ca_a), (b, ca_b)):
            [(issuer, key)] = ca.issuers()
            signed = crl.build_crl(issuer, key, [], validity=dt.timedelta(hours=2), now=now)
            own[shared] = {crl.issuer_id(issuer): crl.crls_pem([signed])}
            await shared.publish(ca, own[shared])

        def serves_both(shared: EtcdSecurity) -> bool:
            return len(crl.load_crls(shared.crls(own[shared], now))) == 2

        for shared in (a, b):
            await until(functools.partial(serves_both, shared))

        # the root host publishes a rotation; both replicas trust the new root
        assert a.trust_bundle(ca_a) == root.trust_bundle_pem()  # the first one published
        root.rotate_root(propagation=0)
        root_host = EtcdSecurity(a.store, root.directory)  # a control plane with the root key
        await root_host.start()
        await root_host.publish(root, {})
        await root_host.close()

        def trusts_new_root(shared: EtcdSecurity, ca: CertificateAuthority) -> bool:
            return shared.trust_bundle(ca) == root.trust_bundle_pem()

        for shared, ca in ((a, ca_a), (b, ca_b)):
            await until(functools.partial(trusts_new_root, shared, ca))
    finally:
        for shared in (a, b):
            await shared.close()
            await shared.store.close()
