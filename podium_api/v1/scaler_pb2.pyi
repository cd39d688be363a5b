from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ReplicaLogsRequest(_message.Message):
    __slots__ = ("deployment_key", "build", "max_bytes")
    DEPLOYMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    deployment_key: str
    build: bool
    max_bytes: int
    def __init__(self, deployment_key: _Optional[str] = ..., build: _Optional[bool] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class ReplicaLogsReply(_message.Message):
    __slots__ = ("logs",)
    LOGS_FIELD_NUMBER: _ClassVar[int]
    logs: str
    def __init__(self, logs: _Optional[str] = ...) -> None: ...
