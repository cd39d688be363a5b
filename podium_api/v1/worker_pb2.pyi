from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictItem(_message.Message):
    __slots__ = ("id", "body", "content_type", "request_id", "traceparent", "timeout_s", "method", "credit")
    class Method(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PREDICT: _ClassVar[PredictItem.Method]
        INFER: _ClassVar[PredictItem.Method]
        EVENTS: _ClassVar[PredictItem.Method]
        CREDIT: _ClassVar[PredictItem.Method]
        CANCEL: _ClassVar[PredictItem.Method]
    PREDICT: PredictItem.Method
    INFER: PredictItem.Method
    EVENTS: PredictItem.Method
    CREDIT: PredictItem.Method
    CANCEL: PredictItem.Method
    ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    id: int
    body: bytes
    content_type: str
    request_id: str
    traceparent: str
    timeout_s: float
    method: PredictItem.Method
    credit: int
    def __init__(self, id: _Optional[int] = ..., body: _Optional[bytes] = ..., content_type: _Optional[str] = ..., request_id: _Optional[str] = ..., traceparent: _Optional[str] = ..., timeout_s: _Optional[float] = ..., method: _Optional[_Union[PredictItem.Method, str]] = ..., credit: _Optional[int] = ...) -> None: ...

class PredictFrame(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PredictItem]
    def __init__(self, items: _Optional[_Iterable[_Union[PredictItem, _Mapping]]] = ...) -> None: ...

class PredictItemReply(_message.Message):
    __slots__ = ("id", "http_status", "body", "content_type", "model_ms", "error_code", "message", "more")
    ID_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    id: int
    http_status: int
    body: bytes
    content_type: str
    model_ms: float
    error_code: str
    message: str
    more: bool
    def __init__(self, id: _Optional[int] = ..., http_status: _Optional[int] = ..., body: _Optional[bytes] = ..., content_type: _Optional[str] = ..., model_ms: _Optional[float] = ..., error_code: _Optional[str] = ..., message: _Optional[str] = ..., more: _Optional[bool] = ...) -> None: ...

class PredictReplyFrame(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PredictItemReply]
    def __init__(self, items: _Optional[_Iterable[_Union[PredictItemReply, _Mapping]]] = ...) -> None: ...

class PredictEvent(_message.Message):
    __slots__ = ("data", "http_status")
    DATA_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    http_status: int
    def __init__(self, data: _Optional[bytes] = ..., http_status: _Optional[int] = ...) -> None: ...

class MetadataRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TensorMetadata(_message.Message):
    __slots__ = ("name", "datatype", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    datatype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., datatype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class MetadataReply(_message.Message):
    __slots__ = ("platform", "inputs", "outputs", "task", "is_streaming")
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    IS_STREAMING_FIELD_NUMBER: _ClassVar[int]
    platform: str
    inputs: _containers.RepeatedCompositeFieldContainer[TensorMetadata]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorMetadata]
    task: str
    is_streaming: bool
    def __init__(self, platform: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[TensorMetadata, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorMetadata, _Mapping]]] = ..., task: _Optional[str] = ..., is_streaming: _Optional[bool] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("name", "datatype", "shape", "raw")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    name: str
    datatype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    raw: bytes
    def __init__(self, name: _Optional[str] = ..., datatype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., raw: _Optional[bytes] = ...) -> None: ...

class InferRequest(_message.Message):
    __slots__ = ("inputs", "outputs", "parameters_json")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    outputs: _containers.RepeatedScalarFieldContainer[str]
    parameters_json: str
    def __init__(self, inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., outputs: _Optional[_Iterable[str]] = ..., parameters_json: _Optional[str] = ...) -> None: ...

class InferReply(_message.Message):
    __slots__ = ("outputs",)
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, outputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...
