from harpagon.v1 import worker_pb2 as _worker_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterRequest(_message.Message):
    __slots__ = ("worker_id", "address", "hardware", "device", "emulated", "running")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    EMULATED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    address: str
    hardware: str
    device: str
    emulated: bool
    running: _worker_pb2.WorkerConfig
    def __init__(self, worker_id: _Optional[str] = ..., address: _Optional[str] = ..., hardware: _Optional[str] = ..., device: _Optional[str] = ..., emulated: _Optional[bool] = ..., running: _Optional[_Union[_worker_pb2.WorkerConfig, _Mapping]] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("heartbeat_ms",)
    HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    heartbeat_ms: int
    def __init__(self, heartbeat_ms: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "config_version", "modules")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    config_version: int
    modules: _containers.RepeatedCompositeFieldContainer[_worker_pb2.ModuleStats]
    def __init__(self, worker_id: _Optional[str] = ..., config_version: _Optional[int] = ..., modules: _Optional[_Iterable[_Union[_worker_pb2.ModuleStats, _Mapping]]] = ...) -> None: ...

class LeaveRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class LeaveResponse(_message.Message):
    __slots__ = ("done",)
    DONE_FIELD_NUMBER: _ClassVar[int]
    done: bool
    def __init__(self, done: _Optional[bool] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("known",)
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    known: bool
    def __init__(self, known: _Optional[bool] = ...) -> None: ...

class TupleRoute(_message.Message):
    __slots__ = ("batch", "rate", "dummy_rate", "wait_ms", "addresses", "worker_module", "latency_ms")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    DUMMY_RATE_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    WORKER_MODULE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    batch: int
    rate: float
    dummy_rate: float
    wait_ms: float
    addresses: _containers.RepeatedScalarFieldContainer[str]
    worker_module: str
    latency_ms: float
    def __init__(self, batch: _Optional[int] = ..., rate: _Optional[float] = ..., dummy_rate: _Optional[float] = ..., wait_ms: _Optional[float] = ..., addresses: _Optional[_Iterable[str]] = ..., worker_module: _Optional[str] = ..., latency_ms: _Optional[float] = ...) -> None: ...

class ModuleRoute(_message.Message):
    __slots__ = ("app", "module", "input_shape", "tuples")
    APP_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    TUPLES_FIELD_NUMBER: _ClassVar[int]
    app: str
    module: str
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    tuples: _containers.RepeatedCompositeFieldContainer[TupleRoute]
    def __init__(self, app: _Optional[str] = ..., module: _Optional[str] = ..., input_shape: _Optional[_Iterable[int]] = ..., tuples: _Optional[_Iterable[_Union[TupleRoute, _Mapping]]] = ...) -> None: ...

class OutputSpec(_message.Message):
    __slots__ = ("name", "datatype", "dims")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    datatype: str
    dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., datatype: _Optional[str] = ..., dims: _Optional[_Iterable[int]] = ...) -> None: ...

class AppModule(_message.Message):
    __slots__ = ("name", "after", "input", "scale", "task", "objects", "labels", "outputs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    after: _containers.RepeatedScalarFieldContainer[str]
    input: str
    scale: float
    task: str
    objects: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    outputs: _containers.RepeatedCompositeFieldContainer[OutputSpec]
    def __init__(self, name: _Optional[str] = ..., after: _Optional[_Iterable[str]] = ..., input: _Optional[str] = ..., scale: _Optional[float] = ..., task: _Optional[str] = ..., objects: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., outputs: _Optional[_Iterable[_Union[OutputSpec, _Mapping]]] = ...) -> None: ...

class StreamRoute(_message.Message):
    __slots__ = ("name", "frontend_id", "address", "rate")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FRONTEND_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    frontend_id: str
    address: str
    rate: float
    def __init__(self, name: _Optional[str] = ..., frontend_id: _Optional[str] = ..., address: _Optional[str] = ..., rate: _Optional[float] = ...) -> None: ...

class AppRoute(_message.Message):
    __slots__ = ("name", "rate", "slo_ms", "modules", "streams")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    SLO_MS_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    rate: float
    slo_ms: float
    modules: _containers.RepeatedCompositeFieldContainer[AppModule]
    streams: _containers.RepeatedCompositeFieldContainer[StreamRoute]
    def __init__(self, name: _Optional[str] = ..., rate: _Optional[float] = ..., slo_ms: _Optional[float] = ..., modules: _Optional[_Iterable[_Union[AppModule, _Mapping]]] = ..., streams: _Optional[_Iterable[_Union[StreamRoute, _Mapping]]] = ...) -> None: ...

class Routes(_message.Message):
    __slots__ = ("version", "dispatch", "modules", "refused", "apps")
    class RefusedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    APPS_FIELD_NUMBER: _ClassVar[int]
    version: int
    dispatch: str
    modules: _containers.RepeatedCompositeFieldContainer[ModuleRoute]
    refused: _containers.ScalarMap[str, str]
    apps: _containers.RepeatedCompositeFieldContainer[AppRoute]
    def __init__(self, version: _Optional[int] = ..., dispatch: _Optional[str] = ..., modules: _Optional[_Iterable[_Union[ModuleRoute, _Mapping]]] = ..., refused: _Optional[_Mapping[str, str]] = ..., apps: _Optional[_Iterable[_Union[AppRoute, _Mapping]]] = ...) -> None: ...

class WatchRoutesRequest(_message.Message):
    __slots__ = ("frontend_id", "address")
    FRONTEND_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    frontend_id: str
    address: str
    def __init__(self, frontend_id: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class RatesReport(_message.Message):
    __slots__ = ("frontend_id", "app_rates", "window_s", "hop_overhead_ms", "fanout")
    class AppRatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FRONTEND_ID_FIELD_NUMBER: _ClassVar[int]
    APP_RATES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    HOP_OVERHEAD_MS_FIELD_NUMBER: _ClassVar[int]
    FANOUT_FIELD_NUMBER: _ClassVar[int]
    frontend_id: str
    app_rates: _containers.ScalarMap[str, float]
    window_s: float
    hop_overhead_ms: _containers.RepeatedScalarFieldContainer[float]
    fanout: _containers.RepeatedCompositeFieldContainer[ModuleFanout]
    def __init__(self, frontend_id: _Optional[str] = ..., app_rates: _Optional[_Mapping[str, float]] = ..., window_s: _Optional[float] = ..., hop_overhead_ms: _Optional[_Iterable[float]] = ..., fanout: _Optional[_Iterable[_Union[ModuleFanout, _Mapping]]] = ...) -> None: ...

class ModuleFanout(_message.Message):
    __slots__ = ("app", "module", "frames", "requests")
    APP_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    app: str
    module: str
    frames: int
    requests: int
    def __init__(self, app: _Optional[str] = ..., module: _Optional[str] = ..., frames: _Optional[int] = ..., requests: _Optional[int] = ...) -> None: ...

class RatesReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
