"""The CUDA fast path in PyTorch: module preparation (BN folding, FP16, channels_last, CUDA graphs) and
GPU-resident detector and embedder pipelines that copy only final small arrays back to the host.

Importing this package imports torch; nothing touches CUDA until a pipeline is built on a CUDA device.
The pipelines: ``engines.gpu.detector.GpuRetinaFace`` and ``engines.gpu.embedder.GpuArcFace``.
Measurements: docs/benchmarks_gpu.md.
"""

from engines.gpu.optimize import (
    FastModule,
    Float32Island,
    GraphedCallable,
    count_macs,
    densify_grouped_convs,
    fold_batchnorm,
    prepare_module,
)

__all__ = ["FastModule", "Float32Island", "GraphedCallable", "count_macs", "densify_grouped_convs",
           "fold_batchnorm", "prepare_module"]
