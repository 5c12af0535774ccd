"""The process runtime: stages in ``spawn``ed processes joined by shared-memory frame rings and record queues."""

from app.runtime.metrics import Metrics, MetricsSpec, StageMetrics, StageStats
from app.runtime.process import (
    Pipeline,
    PipelineResult,
    StageContext,
    StageFailure,
    StageSpec,
    StopStage,
    run_target,
)
from app.runtime.shm import (
    END,
    FrameInfo,
    FrameRing,
    QueueBroken,
    QueueSpec,
    Record,
    RecordQueue,
    RingSpec,
    encoded_size,
)

__all__ = [
    "END", "FrameInfo", "FrameRing", "Metrics", "MetricsSpec", "Pipeline", "PipelineResult", "QueueBroken",
    "QueueSpec", "Record", "RecordQueue", "RingSpec", "StageContext", "StageFailure", "StageMetrics", "StageSpec",
    "StageStats", "StopStage", "encoded_size", "run_target",
]
