from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CertifyRequest(_message.Message):
    __slots__ = ("csr", "token", "service", "namespace", "ttl_seconds", "instance_id")
    CSR_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    csr: bytes
    token: str
    service: str
    namespace: str
    ttl_seconds: int
    instance_id: str
    def __init__(self, csr: _Optional[bytes] = ..., token: _Optional[str] = ..., service: _Optional[str] = ..., namespace: _Optional[str] = ..., ttl_seconds: _Optional[int] = ..., instance_id: _Optional[str] = ...) -> None: ...

class CertifyResponse(_message.Message):
    __slots__ = ("cert_chain", "trust_bundle", "not_after_unix", "spiffe_id")
    CERT_CHAIN_FIELD_NUMBER: _ClassVar[int]
    TRUST_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_UNIX_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    cert_chain: bytes
    trust_bundle: bytes
    not_after_unix: int
    spiffe_id: str
    def __init__(self, cert_chain: _Optional[bytes] = ..., trust_bundle: _Optional[bytes] = ..., not_after_unix: _Optional[int] = ..., spiffe_id: _Optional[str] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("instance_id", "address", "port", "service_ports", "zone", "node", "labels", "weight", "admin_port", "health", "service", "namespace", "other_addresses", "metrics_port")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_PORTS_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ADMIN_PORT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    OTHER_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    METRICS_PORT_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    address: str
    port: int
    service_ports: _containers.RepeatedScalarFieldContainer[int]
    zone: str
    node: str
    labels: _containers.ScalarMap[str, str]
    weight: int
    admin_port: int
    health: str
    service: str
    namespace: str
    other_addresses: _containers.RepeatedScalarFieldContainer[str]
    metrics_port: int
    def __init__(self, instance_id: _Optional[str] = ..., address: _Optional[str] = ..., port: _Optional[int] = ..., service_ports: _Optional[_Iterable[int]] = ..., zone: _Optional[str] = ..., node: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., weight: _Optional[int] = ..., admin_port: _Optional[int] = ..., health: _Optional[str] = ..., service: _Optional[str] = ..., namespace: _Optional[str] = ..., other_addresses: _Optional[_Iterable[str]] = ..., metrics_port: _Optional[int] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("instance", "health")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    instance: Instance
    health: str
    def __init__(self, instance: _Optional[_Union[Instance, _Mapping]] = ..., health: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("status", "message")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    status: str
    message: str
    def __init__(self, status: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class TapOpen(_message.Message):
    __slots__ = ("id", "direction", "to", "path_prefix", "method", "rate")
    ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    id: str
    direction: str
    to: str
    path_prefix: str
    method: str
    rate: int
    def __init__(self, id: _Optional[str] = ..., direction: _Optional[str] = ..., to: _Optional[str] = ..., path_prefix: _Optional[str] = ..., method: _Optional[str] = ..., rate: _Optional[int] = ...) -> None: ...

class TapCommand(_message.Message):
    __slots__ = ("open", "close")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    open: TapOpen
    close: str
    def __init__(self, open: _Optional[_Union[TapOpen, _Mapping]] = ..., close: _Optional[str] = ...) -> None: ...

class TapRecord(_message.Message):
    __slots__ = ("ts", "direction", "source", "destination", "method", "authority", "path", "status", "latency_ms", "bytes", "trace_id", "sampled")
    TS_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FIELD_NUMBER: _ClassVar[int]
    ts: float
    direction: str
    source: str
    destination: str
    method: str
    authority: str
    path: str
    status: int
    latency_ms: float
    bytes: int
    trace_id: str
    sampled: bool
    def __init__(self, ts: _Optional[float] = ..., direction: _Optional[str] = ..., source: _Optional[str] = ..., destination: _Optional[str] = ..., method: _Optional[str] = ..., authority: _Optional[str] = ..., path: _Optional[str] = ..., status: _Optional[int] = ..., latency_ms: _Optional[float] = ..., bytes: _Optional[int] = ..., trace_id: _Optional[str] = ..., sampled: _Optional[bool] = ...) -> None: ...

class TapReport(_message.Message):
    __slots__ = ("tap_id", "records", "dropped", "instance_id")
    TAP_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    tap_id: str
    records: _containers.RepeatedCompositeFieldContainer[TapRecord]
    dropped: int
    instance_id: str
    def __init__(self, tap_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[TapRecord, _Mapping]]] = ..., dropped: _Optional[int] = ..., instance_id: _Optional[str] = ...) -> None: ...
