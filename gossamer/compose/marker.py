"""The top-level `x-gossamer:` block that marks a file as injected.

It records the options of the injection and the original file, byte for byte, as
zlib-compressed base64 text (`original`), so `gossamer uninject` needs nothing but
the injected file itself — it survives being copied, committed or moved away from
`.gossamer/`. Base64 has no `#`, so the block cannot fake a preserved comment.

Compose ignores top-level `x-*` keys; the Compose Specification allows them.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import LiteralScalarString

from gossamer.compose import names
from gossamer.compose.comments import set_before
from gossamer.compose.document import ComposeDocument, line_of
from gossamer.compose.options import GATEWAY_PORT, InjectOptions
from gossamer.compose.plan import Plan
from gossamer.errors import ConfigError, UsageError

FORMAT = 1
_WIDTH = 76
HEADER = (
    "Added by `gossamer inject`. `gossamer uninject` restores the original file from\n"
    "`original` (zlib + base64). Injecting again with the same options changes nothing."
)


@dataclass(frozen=True)
class Marker:
    """What an injected file records about its injection."""

    options: InjectOptions
    original: str
    blob: str  # `original` exactly as stored, so a re-render can reuse it


def encode_original(text: str) -> str:
    raw = base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")
    return "".join(raw[i : i + _WIDTH] + "\n" for i in range(0, len(raw), _WIDTH))


def decode_original(blob: str) -> str:
    packed = base64.b64decode("".join(blob.split()), validate=True)
    return zlib.decompress(packed).decode("utf-8")


def block(options: InjectOptions, plan: Plan, blob: str) -> CommentedMap:
    result = CommentedMap()
    result["format"] = FORMAT
    result["mode"] = options.mode
    result["namespace"] = options.namespace
    result["image"] = options.image
    result["observability"] = options.observability
    result["proxy_env"] = options.proxy_env
    if not options.dns_capture:  # recorded only when not the default (older files)
        result["dns_capture"] = False
    if options.bootstrap != "files":  # recorded only when not the default (older files)
        result["bootstrap"] = options.bootstrap
    if options.trust_domain is not None:
        result["trust_domain"] = options.trust_domain
    _multinode(result, options)
    for key, values in (
        ("only", options.only),
        ("exclude", options.exclude),
        ("meshed", [sp.name for sp in plan.meshed]),
    ):
        seq = CommentedSeq(values)
        seq.fa.set_flow_style()
        result[key] = seq
    result["original"] = LiteralScalarString(blob)
    return result


def _multinode(result: CommentedMap, options: InjectOptions) -> None:
    """The multi-node options, recorded only when set (files without them stay as they
    were)."""
    if options.node is not None:
        result["node"] = options.node
    if options.join:
        seq = CommentedSeq(options.join)
        seq.fa.set_flow_style()
        result["join"] = seq
    if options.advertise_host is not None:
        result["advertise_host"] = options.advertise_host
    if options.gateway_port != GATEWAY_PORT:
        result["gateway_port"] = options.gateway_port
    if options.control_replica:
        result["control_replica"] = True
    if options.etcd is not None:
        result["etcd"] = options.etcd


def _int(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a number, not {value!r}")
    return value


def add_block(doc: ComposeDocument, options: InjectOptions, plan: Plan, blob: str) -> None:
    doc.data[names.EXTENSION] = block(options, plan, blob)
    set_before(doc.data, names.EXTENSION, HEADER)


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of service names")
    return tuple(value)


def read(doc: ComposeDocument) -> Marker | None:
    """The marker of an injected file; None for a file that was never injected."""
    raw = doc.data.get(names.EXTENSION)
    if raw is None:
        return None
    if not isinstance(raw, dict) or "original" not in raw:
        raise ConfigError(
            "the top-level x-gossamer key is reserved for the record gossamer inject writes",
            field=names.EXTENSION,
            source=doc.source,
            line=line_of(doc.data, names.EXTENSION),
            hint="rename that key",
        )
    where = line_of(doc.data, names.EXTENSION)
    if raw.get("format") != FORMAT:
        raise ConfigError(
            f"this file was injected by another version of gossamer (format {raw.get('format')!r})",
            field=f"{names.EXTENSION}.format",
            source=doc.source,
            line=where,
        )
    try:
        blob = str(raw["original"])
        original = decode_original(blob)
        options = InjectOptions(
            mode=str(raw["mode"]),
            only=_names(raw.get("only", [])),
            exclude=_names(raw.get("exclude", [])),
            observability=bool(raw["observability"]),
            image=str(raw["image"]),
            namespace=str(raw["namespace"]),
            proxy_env=bool(raw.get("proxy_env", True)),
            dns_capture=bool(raw.get("dns_capture", True)),
            bootstrap=str(raw.get("bootstrap", "files")),
            trust_domain=str(raw["trust_domain"]) if raw.get("trust_domain") else None,
            node=str(raw["node"]) if raw.get("node") is not None else None,
            join=_names(raw.get("join", [])),
            advertise_host=str(raw["advertise_host"]) if raw.get("advertise_host") else None,
            gateway_port=_int(raw.get("gateway_port"), GATEWAY_PORT),
            control_replica=bool(raw.get("control_replica", False)),
            etcd=str(raw["etcd"]) if raw.get("etcd") else None,
        )
    except (
        KeyError,
        ValueError,
        binascii.Error,
        zlib.error,
        UnicodeDecodeError,
        UsageError,
    ) as exc:
        detail = exc.message if isinstance(exc, UsageError) else str(exc) or type(exc).__name__
        raise ConfigError(
            f"the injection record is damaged ({detail})",
            field=names.EXTENSION,
            source=doc.source,
            line=where,
            hint="was the x-gossamer block edited? restore it from version control",
        ) from None
    return Marker(options=options, original=original, blob=blob)
