"""The sidecar's DNS decision: bytes -> `proxy/listeners/dns.py` `decide`.

Input: the bytes of one message, as the app's resolver (or anything in its namespace)
sends to the sidecar's DNS port. Allowed: FORWARD (the bytes go to the upstream
unchanged), DROP (only for a message without a full header, or a response), or a reply
that parses back (`dns_wire.parse_response`) with the query's ID, the QR bit, and
either FORMERR without a question, or NOERROR with the question's name, an answer only
to an A query for a name the table holds, and that name's VIP. Nothing may be raised.
"""

from __future__ import annotations

import socket

from fuzz.harness import FuzzBug
from gossamer.proxy.config import Cluster, Endpoint
from gossamer.proxy.listeners.dns import DROP, FORWARD, decide
from gossamer.proxy.routing.mesh_names import VipAllocator, build
from gossamer.proxy.transport import dns_wire as wire

_CLUSTER = Cluster("outbound|8080||catalog.default", "catalog", 8080,
                   identity="spiffe://gossamer.local/ns/default/sa/catalog")  # fmt: skip
NAMES = build(
    {_CLUSTER.name: _CLUSTER},
    {_CLUSTER.name: (Endpoint("10.0.0.12", 15443, node="node-2"),)},
    own_node="node-1",
    own_namespace="default",
    trust_domain="gossamer.local",
    allocator=VipAllocator(),
)


def test_one_input(data: bytes) -> None:
    try:
        verdict = decide(data, NAMES, 30)
    except Exception as exc:
        raise FuzzBug(f"{type(exc).__name__}: {exc}") from exc
    if verdict == FORWARD:
        return
    if verdict == DROP:
        if len(data) >= wire.HEADER_SIZE and not data[2] & 0x80:
            raise FuzzBug("a query with a full header dropped")
        return
    if not isinstance(verdict, bytes):
        raise FuzzBug(f"verdict {verdict!r}")
    try:
        reply = wire.parse_response(verdict)
    except wire.Malformed as exc:
        raise FuzzBug(f"our reply does not parse: {exc}") from exc
    if reply.id != wire.message_id(data) or not reply.flags & wire.FLAG_QR:
        raise FuzzBug(f"reply id {reply.id} / flags {reply.flags:#x}")
    if reply.rcode == wire.RCODE_FORMERR:
        if reply.name or reply.addresses:
            raise FuzzBug("FORMERR with a question or an answer")
        return
    if reply.rcode != wire.RCODE_NOERROR:
        raise FuzzBug(f"rcode {reply.rcode}")
    vip = NAMES.lookup(reply.name)
    if vip is None:
        raise FuzzBug(f"answered {reply.name!r}, not a name of the table")
    expected = (socket.inet_aton(vip),) if reply.qtype == wire.TYPE_A else ()
    if reply.addresses != expected:
        raise FuzzBug(f"{reply.name!r} type {reply.qtype}: {reply.addresses!r}")
