"""Control-plane replicas with their own intermediates sharing tokens, revocations and the
trust bundle through etcd (issue 18, item 3): real etcd, two real `gossamer control`
processes, real `gossamer proxy` sidecars and the real CLI.

Replica A's intermediate is made with `gossamer certs intermediate --out` (the one-command
form, as on the root's host), replica B's with the CSR flow (`intermediate-csr`,
`sign-intermediate`, `install-intermediate`); neither directory holds a root key.

- a join token made on A bootstraps a sidecar on B, and is then used up on both;
- sidecars certified by A and by B (different intermediates) talk mTLS to each other;
- a revocation on A is enforced by B's sidecars (handshake refused) within seconds;
- revoking a token on B also revokes the leaves A issued from it, and revoking a leaf
  on A also revokes its renewal at B;
- a root rotation on the root's host (`rotate-root --store`, or a control plane on the
  root's host, which publishes the bundle itself) reaches sidecars of both,
  and after a new intermediate for each replica (`certs intermediate` again) a sidecar
  certified under the new root talks to one certified under the old.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from gossamer.errors import AuthorizationDenied
from gossamer.proxy.agent.bootstrap import bootstrap, mtls_context, renew
from gossamer.proxy.agent.channels import plane_channel
from tests.helpers.etcd import EtcdCluster
from tests.helpers.operator_api import api_call
from tests.helpers.procs import processes, run_gossamer, wait_for
from tests.helpers.xds_mesh import TD, XdsMesh, XdsSidecar, http_service

pytestmark = pytest.mark.e2e
SERVICES = [http_service("catalog"), http_service("web"), http_service("other")]


def ok(*args: str) -> str:
    done = run_gossamer(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


class Replicas:
    def __init__(self, tmp: Path, procs: list[Any], store: str) -> None:
        self.root = tmp / "root-ca"
        ok("certs", "init", "--trust-domain", TD, "--dir", str(self.root))
        a_ca, b_ca = tmp / "a-ca", tmp / "b-ca"
        ok("certs", "intermediate", "--out", str(a_ca), "--ca-dir", str(self.root),
           "--name", "replica-a")  # fmt: skip
        ok("certs", "intermediate-csr", "--out", str(b_ca), "--name", "replica-b")
        signed = tmp / "replica-b.json"
        ok("certs", "sign-intermediate", "--csr", str(b_ca / "intermediate.csr"),
           "--ca-dir", str(self.root), "--out", str(signed))  # fmt: skip
        ok("certs", "install-intermediate", "--dir", str(b_ca), "--signed", str(signed))
        self.dirs = {"a": a_ca, "b": b_ca}
        self.store = store
        self.procs = procs
        for name in ("a", "b", "c"):
            (tmp / name).mkdir()
        self.a = XdsMesh(tmp / "a", procs, SERVICES, ca_dir=str(a_ca), store=store)
        self.b = XdsMesh(tmp / "b", procs, SERVICES, ca_dir=str(b_ca), store=store)
        for mesh in (self.a, self.b):
            mesh.start_control()

    def admin(self, mesh: XdsMesh) -> str:
        return (mesh.tmp / "data" / "admin-token").read_text().strip()

    def api(self, mesh: XdsMesh, path: str, method: str = "GET", body: Any = None) -> Any:
        status, answer = api_call(mesh.ports["api"], path, self.admin(mesh), method, body)
        assert status < 300, answer
        return answer

    def token(self, mesh: XdsMesh, service: str, reusable: int = 1) -> str:
        made = self.api(mesh, "/v1/tokens", "POST", {"service": service, "reusable": reusable})
        return str(made["token"])

    def api_args(self, mesh: XdsMesh) -> list[str]:
        return ["--api", f"http://127.0.0.1:{mesh.ports['api']}", "--token", self.admin(mesh)]


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, shared_etcd: EtcdCluster
) -> Iterator[Replicas]:
    tmp = tmp_path_factory.mktemp("replicas")
    with processes() as procs:
        yield Replicas(tmp, procs, shared_etcd.store_url("/replicas"))


def certificate(sidecar: XdsSidecar) -> dict[str, Any]:
    return dict(sidecar.admin_json("/config_dump?resources=0")["certificate"])


def holds(sidecar: XdsSidecar, field: str, at_least: int) -> bool:
    return int(certificate(sidecar)[field]) >= at_least


def reaches(sidecar: XdsSidecar) -> bool:
    return answers(sidecar) == 200


def answers(sidecar: XdsSidecar) -> int:
    try:
        return sidecar.get("catalog:8080", timeout=3)[0]
    except OSError:
        return 0


@pytest.fixture(scope="module")
def mesh(replicas: Replicas) -> dict[str, XdsSidecar]:
    """catalog (with its app) certified by B with a token made on A; web and other
    certified by A and B."""
    a, b = replicas.a, replicas.b
    catalog = b.sidecar("catalog", b.app("catalog"), token=replicas.token(a, "catalog"),
                        name="catalog-1")  # fmt: skip
    web = a.sidecar("web", token=replicas.token(a, "web"))
    other = b.sidecar("other", token=replicas.token(b, "other"))
    other_a = a.sidecar("other", token=replicas.token(a, "other"), name="other-a")
    return {"catalog": catalog, "web": web, "other": other, "other_a": other_a}


def test_replica_directories_hold_no_root_key(replicas: Replicas):
    for directory in replicas.dirs.values():
        assert not list(directory.glob("root-*.key"))
        assert (directory / "intermediate-1.key").stat().st_mode & 0o777 == 0o600
        assert not (directory / "intermediate-pending.key").exists()
    refused = run_gossamer("certs", "rotate-root", "--dir", str(replicas.dirs["a"]))
    assert refused.returncode != 0
    assert "holds no root key" in refused.stderr and "Traceback" not in refused.stderr
    stranger = replicas.root.parent / "stranger-ca"  # another mesh's root: never published
    ok("certs", "init", "--trust-domain", TD, "--dir", str(stranger))
    refused = run_gossamer("certs", "bundle", "--dir", str(stranger), "--store", replicas.store)
    assert refused.returncode != 0 and "shares no root" in refused.stderr, refused.stderr


def certify(mesh: XdsMesh, token: str, instance: str) -> Any:
    """Bootstrap with `token` at `mesh`'s replica, as sidecar instance `instance`."""
    port = mesh.ports["bootstrap"]
    return asyncio.run(
        bootstrap("127.0.0.1", port, token, "web", "default", TD, instance_id=instance)
    )


def test_a_token_made_on_a_bootstraps_on_b_and_is_used_up_on_both(
    replicas: Replicas, mesh: dict[str, XdsSidecar]
):
    a, b = replicas.a, replicas.b
    made = json.loads(
        ok("token", "create", "--service", "web", *replicas.api_args(a), "-o", "json")
    )
    token = made["token"]
    assert certify(b, token, "web-x").spiffe_id == f"spiffe://{TD}/ns/default/sa/web"
    for replica in (a, b):  # a second instance is refused by either replica
        with pytest.raises(AuthorizationDenied, match="already admitted 1 instance"):
            certify(replica, token, "web-y")
    token_id = token.split(".")[1]
    for replica in (a, b):
        listed = json.loads(ok("token", "list", *replicas.api_args(replica), "-o", "json"))
        [row] = [t for t in listed if t["id"] == token_id]
        assert (row["used"], row["status"]) == (1, "used")
    # the same instance restarting is admitted again, on the other replica too
    certify(a, token, "web-x")
    # a revoked token is refused by both
    replicas.api(a, f"/v1/tokens/{token_id}?keep_certificates=true", "DELETE")
    for replica in (a, b):
        with pytest.raises(AuthorizationDenied, match="revoked"):
            certify(replica, token, "web-x")


def test_sidecars_of_both_replicas_talk_mtls(mesh: dict[str, XdsSidecar]):
    catalog, web, other = mesh["catalog"], mesh["web"], mesh["other"]
    assert "replica-b" in certificate(catalog)["issuer"]
    assert "replica-a" in certificate(web)["issuer"]
    for caller in (web, other):
        wait_for(functools.partial(reaches, caller), timeout=20, what="catalog via the mesh")
    # each sidecar holds the CRLs of both replicas' intermediates
    for sidecar in (catalog, web, other):
        wait_for(functools.partial(holds, sidecar, "crls", 2), timeout=10, what="both CRLs")


def test_a_revocation_on_a_is_enforced_by_b_sidecars(
    replicas: Replicas, mesh: dict[str, XdsSidecar]
):
    catalog, web, other = mesh["catalog"], mesh["web"], mesh["other"]
    wait_for(lambda: answers(web) == 200, timeout=20, what="web -> catalog")
    serial = certificate(web)["serial"]
    started = time.monotonic()
    said = run_gossamer("certs", "revoke", serial, *replicas.api_args(replicas.a))
    assert said.returncode == 0, said.stderr
    wait_for(lambda: certificate(catalog)["revoked"] >= 1, timeout=10, interval=0.05,
             what="B's catalog sidecar to get A's CRL")  # fmt: skip
    wait_for(lambda: answers(web) != 200, timeout=10, interval=0.05, what="web refused")
    print(f"revoke on A -> refused at B's sidecar: {time.monotonic() - started:.2f} s")
    assert time.monotonic() - started < 5
    assert answers(other) == 200  # not revoked: unaffected
    listed = replicas.api(replicas.b, "/v1/revocations")["revoked"]
    assert [e["serial"] for e in listed] == [serial]


def test_revoking_a_token_on_b_revokes_the_leaves_a_issued_from_it(
    replicas: Replicas, mesh: dict[str, XdsSidecar]
):
    a, b = replicas.a, replicas.b
    token = replicas.token(b, "other")  # made on B, used at A: A's lineage has the leaf
    sidecar = a.sidecar("other", token=token, name="other-t")
    wait_for(functools.partial(reaches, sidecar), timeout=20, what="other-t -> catalog")
    serial = certificate(sidecar)["serial"]
    token_id = token.split(".")[1]
    said = ok("token", "revoke", token_id, *replicas.api_args(b))
    assert "revoked token" in said
    wait_for(lambda: answers(sidecar) != 200, timeout=10, interval=0.05,
             what="A's leaf of B's revoked token refused")  # fmt: skip
    [entry] = [e for e in replicas.api(a, "/v1/revocations")["revoked"] if e["serial"] == serial]
    assert entry["token_id"] == token_id and entry["reason"] == f"join token {token_id} revoked"


def test_revoking_a_leaf_on_a_revokes_its_renewal_at_b(replicas: Replicas):
    """A sidecar certified by A renews at B (it moved): revoking its first leaf on A,
    whose lineage does not know the renewal, revokes the renewed one at B too."""
    a, b = replicas.a, replicas.b
    creds = certify(a, replicas.token(a, "web"), "web-moved")

    async def renew_at_b() -> Any:
        channel = plane_channel("127.0.0.1", b.ports["xds"], mtls_context(creds))
        try:
            return await renew(channel)
        finally:
            await channel.close()

    renewed = asyncio.run(renew_at_b())
    first, second = (
        format(x509.load_pem_x509_certificate(c.chain_pem).serial_number, "x")
        for c in (creds, renewed)
    )
    ok("certs", "revoke", first, *replicas.api_args(a))

    def revoked_everywhere() -> bool:
        return all(
            second in {e["serial"] for e in replicas.api(r, "/v1/revocations")["revoked"]}
            for r in (a, b)
        )

    wait_for(revoked_everywhere, timeout=10, interval=0.1, what="the renewal at B revoked")


def test_a_root_rotation_reaches_both_replicas_sidecars(
    replicas: Replicas, mesh: dict[str, XdsSidecar]
):
    on_both = (mesh["catalog"], mesh["other"], mesh["other_a"])  # B, B, A
    assert [certificate(s)["trusted_roots"] for s in on_both] == [1, 1, 1]
    said = ok("certs", "rotate-root", "--dir", str(replicas.root), "--propagation", "0s",
              "--store", replicas.store)  # fmt: skip
    assert "published the trust bundle" in said
    for sidecar in on_both:
        wait_for(functools.partial(holds, sidecar, "trusted_roots", 2), timeout=10,
                 what="the new root at a sidecar")  # fmt: skip
    # each replica gets an intermediate of the new root; new leaves chain to it
    for name, directory in replicas.dirs.items():
        ok("certs", "intermediate", "--out", str(directory), "--ca-dir", str(replicas.root),
           "--name", f"replica-{name}")  # fmt: skip
        state = json.loads((directory / "ca.json").read_text())
        assert (state["generations"], state["active"]) == ([1, 2], 2)
        assert not list(directory.glob("root-*.key"))
    a = replicas.a  # it reads its changed CA directory at the next signing
    fresh = a.sidecar("other", token=replicas.token(a, "other"), name="other-2")
    assert "Intermediate CA 2 replica-a" in certificate(fresh)["issuer"]
    wait_for(lambda: answers(fresh) == 200, timeout=20, what="new-root leaf -> old-root leaf")


def test_a_control_plane_on_the_root_host_publishes_a_rotation_itself(
    replicas: Replicas, mesh: dict[str, XdsSidecar]
):
    """A replica whose ca_dir holds the root key publishes the bundle whenever it
    changes: `rotate-root` there needs no --store."""
    root_host = XdsMesh(
        replicas.root.parent / "c", replicas.procs, SERVICES,
        ca_dir=str(replicas.root), store=replicas.store,
    )  # fmt: skip
    root_host.start_control()
    ok("certs", "rotate-root", "--dir", str(replicas.root), "--propagation", "0s")
    for sidecar in (mesh["catalog"], mesh["other_a"]):  # at B, at A
        wait_for(functools.partial(holds, sidecar, "trusted_roots", 3), timeout=10,
                 what="the root host's new root at another replica's sidecar")  # fmt: skip
    assert "published the trust bundle for every replica" in root_host.control.output()  # type: ignore[union-attr]
