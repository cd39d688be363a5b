from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuthenticateRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class AuthenticateReply(_message.Message):
    __slots__ = ("id", "name", "kind", "display_name", "group_ids", "is_admin", "expires_at", "group_names", "endpoint_scope")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_IDS_FIELD_NUMBER: _ClassVar[int]
    IS_ADMIN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    GROUP_NAMES_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_SCOPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    kind: str
    display_name: str
    group_ids: _containers.RepeatedScalarFieldContainer[str]
    is_admin: bool
    expires_at: float
    group_names: _containers.RepeatedScalarFieldContainer[str]
    endpoint_scope: EndpointScope
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., display_name: _Optional[str] = ..., group_ids: _Optional[_Iterable[str]] = ..., is_admin: _Optional[bool] = ..., expires_at: _Optional[float] = ..., group_names: _Optional[_Iterable[str]] = ..., endpoint_scope: _Optional[_Union[EndpointScope, _Mapping]] = ...) -> None: ...

class EndpointScope(_message.Message):
    __slots__ = ("endpoints",)
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, endpoints: _Optional[_Iterable[str]] = ...) -> None: ...

class IssueOAuthTokenRequest(_message.Message):
    __slots__ = ("client_id", "client_secret", "scope")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    client_secret: str
    scope: str
    def __init__(self, client_id: _Optional[str] = ..., client_secret: _Optional[str] = ..., scope: _Optional[str] = ...) -> None: ...

class IssueOAuthTokenReply(_message.Message):
    __slots__ = ("access_token", "token_type", "expires_in", "scope")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    token_type: str
    expires_in: int
    scope: str
    def __init__(self, access_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ..., scope: _Optional[str] = ...) -> None: ...

class ResolveSecretsRequest(_message.Message):
    __slots__ = ("texts", "endpoint_name")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    endpoint_name: str
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., endpoint_name: _Optional[str] = ...) -> None: ...

class ResolveSecretsReply(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, texts: _Optional[_Iterable[str]] = ...) -> None: ...

class ResolveEnvironmentRequest(_message.Message):
    __slots__ = ("deployment_key",)
    DEPLOYMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    deployment_key: str
    def __init__(self, deployment_key: _Optional[str] = ...) -> None: ...

class ResolveEnvironmentReply(_message.Message):
    __slots__ = ("environment_vars",)
    class EnvironmentVarsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENVIRONMENT_VARS_FIELD_NUMBER: _ClassVar[int]
    environment_vars: _containers.ScalarMap[str, str]
    def __init__(self, environment_vars: _Optional[_Mapping[str, str]] = ...) -> None: ...

class IssueReplicaCredentialRequest(_message.Message):
    __slots__ = ("deployment_key", "endpoints")
    DEPLOYMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    deployment_key: str
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deployment_key: _Optional[str] = ..., endpoints: _Optional[_Iterable[str]] = ...) -> None: ...

class IssueReplicaCredentialReply(_message.Message):
    __slots__ = ("token_id", "client_id", "client_secret")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    client_id: str
    client_secret: str
    def __init__(self, token_id: _Optional[str] = ..., client_id: _Optional[str] = ..., client_secret: _Optional[str] = ...) -> None: ...

class RevokeReplicaCredentialRequest(_message.Message):
    __slots__ = ("token_id",)
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    def __init__(self, token_id: _Optional[str] = ...) -> None: ...

class RevokeReplicaCredentialReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
