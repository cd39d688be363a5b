from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class InvokeRequest(_message.Message):
    __slots__ = ("endpoint", "body", "content_type", "served_model_name")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    body: bytes
    content_type: str
    served_model_name: str
    def __init__(self, endpoint: _Optional[str] = ..., body: _Optional[bytes] = ..., content_type: _Optional[str] = ..., served_model_name: _Optional[str] = ...) -> None: ...

class InvokeReply(_message.Message):
    __slots__ = ("body", "content_type", "served_model_name")
    BODY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    content_type: str
    served_model_name: str
    def __init__(self, body: _Optional[bytes] = ..., content_type: _Optional[str] = ..., served_model_name: _Optional[str] = ...) -> None: ...

class InvokeEvent(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class EndpointContentsRequest(_message.Message):
    __slots__ = ("endpoint",)
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    def __init__(self, endpoint: _Optional[str] = ...) -> None: ...

class ContentsReply(_message.Message):
    __slots__ = ("contents", "content_type")
    CONTENTS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    contents: bytes
    content_type: str
    def __init__(self, contents: _Optional[bytes] = ..., content_type: _Optional[str] = ...) -> None: ...
