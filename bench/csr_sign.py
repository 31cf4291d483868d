"""CSR signings per second on one core: parse, verify, authorize, sign, serialize.

Usage: ./dev bench csr_sign [--count N]

The reference measured in the same run is the raw cost of one ECDSA P-256 signature
and one verification (the floor under any issuance), so the ratio shows how much the
X.509 work around them costs. Target: >= 2,000 signings per second.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.keys import build_csr, generate_key

TARGET = 2000.0


def pin_one_core() -> str:
    try:
        core = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    except (AttributeError, OSError):
        return "unpinned"


def issuance_rate(ca: CertificateAuthority, csrs: list[tuple[bytes, str]]) -> float:
    start = time.perf_counter()
    for pem, identity in csrs:
        issued = ca.issue(pem, identity)
        assert issued.chain_pem
    return len(csrs) / (time.perf_counter() - start)


def raw_sign_verify_rate(count: int) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key()
    algo = ec.ECDSA(hashes.SHA256())
    data = os.urandom(300)
    start = time.perf_counter()
    for _ in range(count):
        pub.verify(key.sign(data, algo), data, algo)
    return count / (time.perf_counter() - start)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench csr_sign")
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args(argv)
    where = pin_one_core()
    with tempfile.TemporaryDirectory() as tmp:
        ca = CertificateAuthority.init(Path(tmp) / "ca", "gossamer.local")
        csrs = []
        for i in range(args.count):
            identity = f"spiffe://gossamer.local/ns/default/sa/svc-{i % 50}"
            csrs.append((build_csr(generate_key(), identity), identity))
        issuance_rate(ca, csrs[:200])  # warm up
        rate = issuance_rate(ca, csrs)
        raw = raw_sign_verify_rate(args.count)
    print(f"CSR signing, one process pinned to {where}, {args.count} distinct CSRs")
    print(f"{'measure':44} {'per second':>12} {'ratio':>8}")
    print(f"{'raw ECDSA P-256 sign+verify (reference)':44} {raw:12,.0f} {1.0:8.2f}")
    print(f"{'gossamer issue: parse+verify+authorize+sign':44} {rate:12,.0f} {rate / raw:8.2f}")
    print(f"{'target':44} {TARGET:12,.0f} {TARGET / raw:8.2f}")
    verdict = "meets" if rate >= TARGET else "MISSES"
    print(f"result: {rate:,.0f} signings/s {verdict} the target of {TARGET:,.0f}/s")
    return 0
