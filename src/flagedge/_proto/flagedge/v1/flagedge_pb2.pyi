from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_STATIC: _ClassVar[Reason]
    REASON_TARGETING_MATCH: _ClassVar[Reason]
    REASON_DEFAULT: _ClassVar[Reason]
    REASON_DISABLED: _ClassVar[Reason]
    REASON_ERROR: _ClassVar[Reason]

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_NONE: _ClassVar[ErrorCode]
    ERROR_CODE_FLAG_NOT_FOUND: _ClassVar[ErrorCode]
    ERROR_CODE_PARSE_ERROR: _ClassVar[ErrorCode]
    ERROR_CODE_TYPE_MISMATCH: _ClassVar[ErrorCode]
    ERROR_CODE_GENERAL: _ClassVar[ErrorCode]

class FlagType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLAG_TYPE_UNSPECIFIED: _ClassVar[FlagType]
    FLAG_TYPE_BOOLEAN: _ClassVar[FlagType]
    FLAG_TYPE_STRING: _ClassVar[FlagType]
    FLAG_TYPE_INTEGER: _ClassVar[FlagType]
    FLAG_TYPE_FLOAT: _ClassVar[FlagType]
    FLAG_TYPE_OBJECT: _ClassVar[FlagType]
REASON_STATIC: Reason
REASON_TARGETING_MATCH: Reason
REASON_DEFAULT: Reason
REASON_DISABLED: Reason
REASON_ERROR: Reason
ERROR_CODE_NONE: ErrorCode
ERROR_CODE_FLAG_NOT_FOUND: ErrorCode
ERROR_CODE_PARSE_ERROR: ErrorCode
ERROR_CODE_TYPE_MISMATCH: ErrorCode
ERROR_CODE_GENERAL: ErrorCode
FLAG_TYPE_UNSPECIFIED: FlagType
FLAG_TYPE_BOOLEAN: FlagType
FLAG_TYPE_STRING: FlagType
FLAG_TYPE_INTEGER: FlagType
FLAG_TYPE_FLOAT: FlagType
FLAG_TYPE_OBJECT: FlagType

class EvaluateRequest(_message.Message):
    __slots__ = ("flag_key", "context", "type")
    FLAG_KEY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    flag_key: str
    context: _struct_pb2.Struct
    type: FlagType
    def __init__(self, flag_key: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., type: _Optional[_Union[FlagType, str]] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("key", "value", "variant", "reason", "error_code", "error_message", "metadata")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: _struct_pb2.Value
    variant: str
    reason: Reason
    error_code: ErrorCode
    error_message: str
    metadata: _struct_pb2.Struct
    def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., variant: _Optional[str] = ..., reason: _Optional[_Union[Reason, str]] = ..., error_code: _Optional[_Union[ErrorCode, str]] = ..., error_message: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("result", "snapshot_version")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_VERSION_FIELD_NUMBER: _ClassVar[int]
    result: Result
    snapshot_version: int
    def __init__(self, result: _Optional[_Union[Result, _Mapping]] = ..., snapshot_version: _Optional[int] = ...) -> None: ...

class EvaluateAllRequest(_message.Message):
    __slots__ = ("context", "keys")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    context: _struct_pb2.Struct
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class EvaluateAllResponse(_message.Message):
    __slots__ = ("results", "snapshot_version")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_VERSION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Result]
    snapshot_version: int
    def __init__(self, results: _Optional[_Iterable[_Union[Result, _Mapping]]] = ..., snapshot_version: _Optional[int] = ...) -> None: ...

class EvaluateBatchRequest(_message.Message):
    __slots__ = ("flag_keys", "contexts", "request_id")
    FLAG_KEYS_FIELD_NUMBER: _ClassVar[int]
    CONTEXTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    flag_keys: _containers.RepeatedScalarFieldContainer[str]
    contexts: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    request_id: int
    def __init__(self, flag_keys: _Optional[_Iterable[str]] = ..., contexts: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., request_id: _Optional[int] = ...) -> None: ...

class FlagTable(_message.Message):
    __slots__ = ("key", "variants", "values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    variants: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    def __init__(self, key: _Optional[str] = ..., variants: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ...) -> None: ...

class EvaluateBatchResponse(_message.Message):
    __slots__ = ("flags", "variant_index", "reasons", "error_codes", "context_count", "snapshot_version", "request_id")
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_INDEX_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_COUNT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    flags: _containers.RepeatedCompositeFieldContainer[FlagTable]
    variant_index: _containers.RepeatedScalarFieldContainer[int]
    reasons: bytes
    error_codes: bytes
    context_count: int
    snapshot_version: int
    request_id: int
    def __init__(self, flags: _Optional[_Iterable[_Union[FlagTable, _Mapping]]] = ..., variant_index: _Optional[_Iterable[int]] = ..., reasons: _Optional[bytes] = ..., error_codes: _Optional[bytes] = ..., context_count: _Optional[int] = ..., snapshot_version: _Optional[int] = ..., request_id: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, keys: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("snapshot_version", "changed_keys", "initial", "server_id")
    SNAPSHOT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_KEYS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    snapshot_version: int
    changed_keys: _containers.RepeatedScalarFieldContainer[str]
    initial: bool
    server_id: str
    def __init__(self, snapshot_version: _Optional[int] = ..., changed_keys: _Optional[_Iterable[str]] = ..., initial: _Optional[bool] = ..., server_id: _Optional[str] = ...) -> None: ...
