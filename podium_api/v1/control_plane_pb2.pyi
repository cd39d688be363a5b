from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRoutingTableRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RoutingTable(_message.Message):
    __slots__ = ("endpoints",)
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedCompositeFieldContainer[EndpointRoutes]
    def __init__(self, endpoints: _Optional[_Iterable[_Union[EndpointRoutes, _Mapping]]] = ...) -> None: ...

class EndpointRoutes(_message.Message):
    __slots__ = ("name", "id", "routes", "gateway_json", "acl")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_JSON_FIELD_NUMBER: _ClassVar[int]
    ACL_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    gateway_json: str
    acl: _containers.RepeatedCompositeFieldContainer[Grant]
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ..., gateway_json: _Optional[str] = ..., acl: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("principal_id", "permission_level")
    PRINCIPAL_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    principal_id: str
    permission_level: str
    def __init__(self, principal_id: _Optional[str] = ..., permission_level: _Optional[str] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("served_entity_name", "traffic_percentage", "deployment_key", "replica_addresses", "external_model_json", "shadow_percentage", "shadow_judge_endpoint")
    SERVED_ENTITY_NAME_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_MODEL_JSON_FIELD_NUMBER: _ClassVar[int]
    SHADOW_PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_JUDGE_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    served_entity_name: str
    traffic_percentage: int
    deployment_key: str
    replica_addresses: _containers.RepeatedScalarFieldContainer[str]
    external_model_json: str
    shadow_percentage: int
    shadow_judge_endpoint: str
    def __init__(self, served_entity_name: _Optional[str] = ..., traffic_percentage: _Optional[int] = ..., deployment_key: _Optional[str] = ..., replica_addresses: _Optional[_Iterable[str]] = ..., external_model_json: _Optional[str] = ..., shadow_percentage: _Optional[int] = ..., shadow_judge_endpoint: _Optional[str] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("key", "endpoint_name", "served_entity_name", "model_uri", "environment_vars", "workload_type", "min_concurrency", "max_concurrency", "scale_to_zero_enabled", "is_serving", "max_batch_size", "max_batch_wait_ms")
    class EnvironmentVarsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    SERVED_ENTITY_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_URI_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_VARS_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_TYPE_FIELD_NUMBER: _ClassVar[int]
    MIN_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    SCALE_TO_ZERO_ENABLED_FIELD_NUMBER: _ClassVar[int]
    IS_SERVING_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    key: str
    endpoint_name: str
    served_entity_name: str
    model_uri: str
    environment_vars: _containers.ScalarMap[str, str]
    workload_type: str
    min_concurrency: int
    max_concurrency: int
    scale_to_zero_enabled: bool
    is_serving: bool
    max_batch_size: int
    max_batch_wait_ms: float
    def __init__(self, key: _Optional[str] = ..., endpoint_name: _Optional[str] = ..., served_entity_name: _Optional[str] = ..., model_uri: _Optional[str] = ..., environment_vars: _Optional[_Mapping[str, str]] = ..., workload_type: _Optional[str] = ..., min_concurrency: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., scale_to_zero_enabled: _Optional[bool] = ..., is_serving: _Optional[bool] = ..., max_batch_size: _Optional[int] = ..., max_batch_wait_ms: _Optional[float] = ...) -> None: ...

class ListDeploymentsReply(_message.Message):
    __slots__ = ("deployments",)
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ...) -> None: ...

class DeploymentStatus(_message.Message):
    __slots__ = ("key", "ready_addresses", "starting_replicas", "failure", "desired_replicas")
    KEY_FIELD_NUMBER: _ClassVar[int]
    READY_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    STARTING_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    key: str
    ready_addresses: _containers.RepeatedScalarFieldContainer[str]
    starting_replicas: int
    failure: str
    desired_replicas: int
    def __init__(self, key: _Optional[str] = ..., ready_addresses: _Optional[_Iterable[str]] = ..., starting_replicas: _Optional[int] = ..., failure: _Optional[str] = ..., desired_replicas: _Optional[int] = ...) -> None: ...

class ReportDeploymentsRequest(_message.Message):
    __slots__ = ("statuses", "scaler_target")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    SCALER_TARGET_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedCompositeFieldContainer[DeploymentStatus]
    scaler_target: str
    def __init__(self, statuses: _Optional[_Iterable[_Union[DeploymentStatus, _Mapping]]] = ..., scaler_target: _Optional[str] = ...) -> None: ...

class ReportDeploymentsReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
