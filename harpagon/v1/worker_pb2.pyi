from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class CropEdge(_message.Message):
    __slots__ = ("child", "labels", "min_score", "max_crops", "shape", "scale", "poisson")
    CHILD_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    MAX_CROPS_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    POISSON_FIELD_NUMBER: _ClassVar[int]
    child: str
    labels: _containers.RepeatedScalarFieldContainer[int]
    min_score: float
    max_crops: int
    shape: _containers.RepeatedScalarFieldContainer[int]
    scale: float
    poisson: bool
    def __init__(self, child: _Optional[str] = ..., labels: _Optional[_Iterable[int]] = ..., min_score: _Optional[float] = ..., max_crops: _Optional[int] = ..., shape: _Optional[_Iterable[int]] = ..., scale: _Optional[float] = ..., poisson: _Optional[bool] = ...) -> None: ...

class ModuleConfig(_message.Message):
    __slots__ = ("name", "model", "batch", "input_shape", "weights", "half", "budget_ms", "crops", "decode_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    HALF_FIELD_NUMBER: _ClassVar[int]
    BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    CROPS_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    batch: int
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    weights: str
    half: bool
    budget_ms: float
    crops: _containers.RepeatedCompositeFieldContainer[CropEdge]
    decode_ms: float
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., batch: _Optional[int] = ..., input_shape: _Optional[_Iterable[int]] = ..., weights: _Optional[str] = ..., half: _Optional[bool] = ..., budget_ms: _Optional[float] = ..., crops: _Optional[_Iterable[_Union[CropEdge, _Mapping]]] = ..., decode_ms: _Optional[float] = ...) -> None: ...

class WorkerConfig(_message.Message):
    __slots__ = ("version", "modules")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    version: int
    modules: _containers.RepeatedCompositeFieldContainer[ModuleConfig]
    def __init__(self, version: _Optional[int] = ..., modules: _Optional[_Iterable[_Union[ModuleConfig, _Mapping]]] = ...) -> None: ...

class ApplyConfigRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: WorkerConfig
    def __init__(self, config: _Optional[_Union[WorkerConfig, _Mapping]] = ...) -> None: ...

class ApplyConfigResponse(_message.Message):
    __slots__ = ("version", "changed")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    version: int
    changed: bool
    def __init__(self, version: _Optional[int] = ..., changed: _Optional[bool] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("data", "encoding", "height", "width")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    encoding: str
    height: int
    width: int
    def __init__(self, data: _Optional[bytes] = ..., encoding: _Optional[str] = ..., height: _Optional[int] = ..., width: _Optional[int] = ...) -> None: ...

class InferRequest(_message.Message):
    __slots__ = ("module", "input", "id", "frames")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    module: str
    input: Tensor
    id: str
    frames: _containers.RepeatedCompositeFieldContainer[Frame]
    def __init__(self, module: _Optional[str] = ..., input: _Optional[_Union[Tensor, _Mapping]] = ..., id: _Optional[str] = ..., frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("item", "message")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    item: int
    message: str
    def __init__(self, item: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class CropSet(_message.Message):
    __slots__ = ("child", "counts", "detection", "items")
    CHILD_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    DETECTION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    child: str
    counts: _containers.RepeatedScalarFieldContainer[int]
    detection: Tensor
    items: Tensor
    def __init__(self, child: _Optional[str] = ..., counts: _Optional[_Iterable[int]] = ..., detection: _Optional[_Union[Tensor, _Mapping]] = ..., items: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class InferResponse(_message.Message):
    __slots__ = ("id", "outputs", "queue_ms", "exec_ms", "batch", "dummies", "crops", "errors")
    ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    EXEC_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    DUMMIES_FIELD_NUMBER: _ClassVar[int]
    CROPS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    id: str
    outputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    queue_ms: float
    exec_ms: float
    batch: int
    dummies: int
    crops: _containers.RepeatedCompositeFieldContainer[CropSet]
    errors: _containers.RepeatedCompositeFieldContainer[ItemError]
    def __init__(self, id: _Optional[str] = ..., outputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., queue_ms: _Optional[float] = ..., exec_ms: _Optional[float] = ..., batch: _Optional[int] = ..., dummies: _Optional[int] = ..., crops: _Optional[_Iterable[_Union[CropSet, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[ItemError, _Mapping]]] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("ready", "config_version", "device", "hardware", "emulated")
    READY_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    EMULATED_FIELD_NUMBER: _ClassVar[int]
    ready: bool
    config_version: int
    device: str
    hardware: str
    emulated: bool
    def __init__(self, ready: _Optional[bool] = ..., config_version: _Optional[int] = ..., device: _Optional[str] = ..., hardware: _Optional[str] = ..., emulated: _Optional[bool] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModuleStats(_message.Message):
    __slots__ = ("module", "batches", "requests", "dummies", "exec_ms_total", "queue_ms_total", "errors", "recent_exec_ms", "expired", "recent_decode_ms")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DUMMIES_FIELD_NUMBER: _ClassVar[int]
    EXEC_MS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    RECENT_EXEC_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    RECENT_DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    module: str
    batches: int
    requests: int
    dummies: int
    exec_ms_total: float
    queue_ms_total: float
    errors: int
    recent_exec_ms: _containers.RepeatedScalarFieldContainer[float]
    expired: int
    recent_decode_ms: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, module: _Optional[str] = ..., batches: _Optional[int] = ..., requests: _Optional[int] = ..., dummies: _Optional[int] = ..., exec_ms_total: _Optional[float] = ..., queue_ms_total: _Optional[float] = ..., errors: _Optional[int] = ..., recent_exec_ms: _Optional[_Iterable[float]] = ..., expired: _Optional[int] = ..., recent_decode_ms: _Optional[_Iterable[float]] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("modules", "emulated", "gpu_utilization", "gpu_memory_used_bytes", "gpu_memory_total_bytes")
    MODULES_FIELD_NUMBER: _ClassVar[int]
    EMULATED_FIELD_NUMBER: _ClassVar[int]
    GPU_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    modules: _containers.RepeatedCompositeFieldContainer[ModuleStats]
    emulated: bool
    gpu_utilization: float
    gpu_memory_used_bytes: int
    gpu_memory_total_bytes: int
    def __init__(self, modules: _Optional[_Iterable[_Union[ModuleStats, _Mapping]]] = ..., emulated: _Optional[bool] = ..., gpu_utilization: _Optional[float] = ..., gpu_memory_used_bytes: _Optional[int] = ..., gpu_memory_total_bytes: _Optional[int] = ...) -> None: ...
