"""The process runtime: runs a list of stages (``app.protocol``) in ``spawn``ed processes joined by
shared-memory frame rings and record queues, or in this one process. Imports no stage."""

from app.runtime.chain import Layout, Step, build_pipeline
from app.runtime.context import StageContext, StopStage
from app.runtime.inline import Inline
from app.runtime.metrics import Metrics, MetricsSpec, StageMetrics, StageStats
from app.runtime.queue import QueueBroken, QueueSpec, RecordQueue
from app.runtime.record import End, encoded_size
from app.runtime.ring import FrameRing, RingSpec, ring_name
from app.runtime.supervisor import Pipeline, PipelineResult, StageFailure

__all__ = [
    "End", "FrameRing", "Inline", "Layout", "Metrics", "MetricsSpec", "Pipeline", "PipelineResult", "QueueBroken",
    "QueueSpec", "RecordQueue", "RingSpec", "StageContext", "StageFailure", "StageMetrics", "StageStats", "Step",
    "StopStage", "build_pipeline", "encoded_size", "ring_name",
]
