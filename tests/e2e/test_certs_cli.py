"""The certificate CLI end to end, checked with the openssl command (a client we didn't write)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

TD = "gossamer.local"
WEB = f"spiffe://{TD}/ns/default/sa/web"


def gossamer(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "gossamer.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in result.stderr, result.stderr
    if check:
        assert result.returncode == 0, result.stderr
    return result


def openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def make_csr(tmp: Path, name: str, san: str) -> Path:
    key, csr = tmp / f"{name}.key", tmp / f"{name}.csr"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    openssl(
        "req",
        "-new",
        "-key",
        str(key),
        "-subj",
        "/O=test",
        "-addext",
        f"subjectAltName={san}",
        "-out",
        str(csr),
    )
    return csr


def split_chain(chain: Path) -> tuple[Path, Path]:
    text = chain.read_text()
    end = "-----END CERTIFICATE-----\n"
    leaf, inter = text.split(end)[0] + end, text.split(end)[1] + end
    leaf_path, inter_path = chain.with_suffix(".leaf.pem"), chain.with_suffix(".inter.pem")
    leaf_path.write_text(leaf)
    inter_path.write_text(inter)
    return leaf_path, inter_path


def verify(bundle: Path, chain: Path) -> subprocess.CompletedProcess[str]:
    leaf, inter = split_chain(chain)
    return openssl(
        "verify", "-CAfile", str(bundle), "-untrusted", str(inter), str(leaf), check=False
    )


def issue(ca: Path, tmp: Path, name: str) -> Path:
    csr = make_csr(tmp, name, f"URI:{WEB}")
    out = tmp / f"{name}.chain.pem"
    gossamer(
        "certs", "issue", "--csr", str(csr), "--identity", WEB, "--dir", str(ca), "--out", str(out)
    )
    return out


def test_init_issue_verify_with_openssl(tmp_path):
    ca = tmp_path / "ca"
    created = json.loads(
        gossamer("certs", "init", "--trust-domain", TD, "--dir", str(ca), "-o", "json").stdout
    )
    assert created["root_pin"].startswith("sha256:")
    for key in ca.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = gossamer("certs", "init", "--trust-domain", TD, "--dir", str(ca), check=False)
    assert again.returncode != 0 and "already exists" in again.stderr and "--force" in again.stderr

    chain = issue(ca, tmp_path, "web")
    result = verify(ca / "bundle.pem", chain)
    assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), (
        result.stdout + result.stderr
    )
    leaf, _ = split_chain(chain)
    text = openssl(
        "x509",
        "-in",
        str(leaf),
        "-noout",
        "-ext",
        "subjectAltName,basicConstraints,keyUsage,extendedKeyUsage",
    ).stdout
    san_lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip().startswith("URI:") or "DNS:" in line
    ]
    assert san_lines == [f"URI:{WEB}"]
    assert "CA:FALSE" in text and "Digital Signature" in text
    assert "TLS Web Server Authentication" in text and "TLS Web Client Authentication" in text

    inspected = json.loads(gossamer("certs", "inspect", str(chain), "-o", "json").stdout)
    assert inspected["chain_links_ok"] is True
    assert inspected["certificates"][0]["spiffe_id"] == WEB
    assert 0 < inspected["certificates"][0]["seconds_left"] <= 86400


def test_foreign_ca_leaf_does_not_verify(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    gossamer("certs", "init", "--trust-domain", TD, "--dir", str(a))
    gossamer("certs", "init", "--trust-domain", TD, "--dir", str(b))
    chain = issue(b, tmp_path, "web")
    assert verify(a / "bundle.pem", chain).returncode != 0


def test_root_rotation_overlap_with_openssl(tmp_path):
    ca = tmp_path / "ca"
    gossamer("certs", "init", "--trust-domain", TD, "--dir", str(ca))
    old = issue(ca, tmp_path, "old")
    rotated = json.loads(
        gossamer(
            "certs", "rotate-root", "--dir", str(ca), "--propagation", "0s", "-o", "json"
        ).stdout
    )
    assert rotated == {"active_generation": 2, "trusted_generations": [1, 2]}
    new = issue(ca, tmp_path, "new")
    bundle = ca / "bundle.pem"
    assert verify(bundle, old).returncode == 0
    assert verify(bundle, new).returncode == 0
    gossamer("certs", "retire-root", "--dir", str(ca))
    assert verify(bundle, old).returncode != 0
    assert verify(bundle, new).returncode == 0


def test_bring_your_own_root(tmp_path):
    key, cert = tmp_path / "root.key", tmp_path / "root.pem"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(key),
        "-subj",
        "/O=Corp/CN=Corp Root",
        "-days",
        "3650",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        str(cert),
    )
    ca = tmp_path / "ca"
    gossamer(
        "certs",
        "init",
        "--trust-domain",
        TD,
        "--dir",
        str(ca),
        "--root-cert",
        str(cert),
        "--root-key",
        str(key),
    )
    chain = issue(ca, tmp_path, "web")
    assert verify(cert, chain).returncode == 0
    half = gossamer(
        "certs",
        "init",
        "--trust-domain",
        TD,
        "--dir",
        str(tmp_path / "x"),
        "--root-cert",
        str(cert),
        check=False,
    )
    assert half.returncode == 2 and "go together" in half.stderr


def test_cli_errors_are_one_line(tmp_path):
    ca = tmp_path / "ca"
    gossamer("certs", "init", "--trust-domain", TD, "--dir", str(ca))
    junk = tmp_path / "junk.csr"
    junk.write_bytes(os.urandom(64))
    bad = gossamer(
        "certs", "issue", "--csr", str(junk), "--identity", WEB, "--dir", str(ca), check=False
    )
    assert bad.returncode == 1 and bad.stderr.startswith(
        "error: the data is not a certificate signing request"
    )
    csr = make_csr(tmp_path, "db", f"URI:spiffe://{TD}/ns/default/sa/db")
    mismatch = gossamer(
        "certs", "issue", "--csr", str(csr), "--identity", WEB, "--dir", str(ca), check=False
    )
    assert mismatch.returncode == 1 and "authorized for" in mismatch.stderr
    missing = gossamer(
        "certs",
        "issue",
        "--csr",
        str(tmp_path / "none.csr"),
        "--identity",
        WEB,
        "--dir",
        str(ca),
        check=False,
    )
    assert missing.returncode == 1 and "cannot read CSR" in missing.stderr
    no_ca = gossamer(
        "token", "create", "--service", "web", "--dir", str(tmp_path / "none"), check=False
    )
    assert no_ca.returncode == 1 and "hint: create one with" in no_ca.stderr
    bad_id = gossamer(
        "certs", "issue", "--csr", str(csr), "--identity", "web", "--dir", str(ca), check=False
    )
    assert bad_id.returncode == 1 and "not a SPIFFE ID" in bad_id.stderr


def test_token_cli(tmp_path):
    ca = tmp_path / "ca"
    gossamer("certs", "init", "--trust-domain", TD, "--dir", str(ca))
    pin = json.loads(
        gossamer(
            "certs", "init", "--trust-domain", TD, "--dir", str(ca), "--force", "-o", "json"
        ).stdout
    )["root_pin"]
    token = gossamer(
        "token", "create", "--service", "web", "--ttl", "10m", "--dir", str(ca)
    ).stdout.strip()
    assert token.startswith("gst1.") and token.endswith(pin)
    listed = json.loads(gossamer("token", "list", "--dir", str(ca), "-o", "json").stdout)
    assert len(listed) == 1 and listed[0]["status"] == "valid" and listed[0]["service"] == "web"
    assert token.split(".")[2] not in json.dumps(listed)
    gossamer("token", "revoke", listed[0]["id"], "--dir", str(ca))
    listed = json.loads(gossamer("token", "list", "--dir", str(ca), "-o", "json").stdout)
    assert listed[0]["status"] == "revoked"
    bad = gossamer(
        "token", "create", "--service", "web", "--ttl", "soon", "--dir", str(ca), check=False
    )
    assert bad.returncode == 2 and "--ttl" in bad.stderr
