"""The models we know, and one call each to get a ready detector or embedder on any backend.

Like insightface's model_zoo: a name picks the files, the adapter (pre/post-processing) and the
PyTorch implementation; the backend is chosen separately.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engines.backends.registry import create_backend
from engines.errors import EngineError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    task: str  # "detector" | "embedder"
    onnx: str  # ONNX file in the checkpoint folder (what onnxruntime and TensorRT read)
    adapter: str  # "module:Class" taking (backend, **kwargs)
    torch_source: str | None = None  # file the PyTorch module loads its weights from
    torch_loader: str | None = None  # "module:function" (path, **kwargs) -> nn.Module
    torch_loader_kwargs: tuple = field(default_factory=tuple)
    description: str = ""


MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("retinaface_mnet025", "detector", "retinaface_mnet025.onnx",
                  "engines.detectors.retinaface:RetinaFace", "retinaface_mnet025.pth",
                  "engines.detectors.retinaface_net:load_retinaface",
                  description="RetinaFace MobileNet-0.25 (default detector)"),
        ModelInfo("scrfd_500m", "detector", "scrfd_500m_bnkps.onnx", "engines.detectors.scrfd:SCRFD",
                  description="SCRFD-500MF with keypoints (onnxruntime/tensorrt only)"),
        ModelInfo("w600k_mbf", "embedder", "w600k_mbf.onnx", "engines.recognizers.arcface:ArcFace",
                  "w600k_mbf.onnx", "engines.recognizers.mobilefacenet:mobilefacenet_from_onnx",
                  description="ArcFace MobileFaceNet, WebFace600K (default recogniser)"),
        ModelInfo("w600k_r50", "embedder", "w600k_r50.onnx", "engines.recognizers.arcface:ArcFace",
                  "w600k_r50.onnx", "engines.recognizers.iresnet:iresnet_from_onnx", (("depth", 50),),
                  description="ArcFace iresnet50 (bring w600k_r50.onnx from buffalo_l)"),
        ModelInfo("glintr100", "embedder", "glintr100.onnx", "engines.recognizers.arcface:ArcFace",
                  "glintr100.onnx", "engines.recognizers.iresnet:iresnet_from_onnx", (("depth", 100),),
                  description="ArcFace iresnet100 (bring glintr100.onnx from antelopev2)"),
    )
}


def get_info(name: str, task: str | None = None) -> ModelInfo:
    info = MODELS.get(name)
    if info is None or (task and info.task != task):
        choices = ", ".join(n for n, m in MODELS.items() if not task or m.task == task)
        raise EngineError(f"unknown {task or 'model'} {name!r}: choose one of {choices}")
    return info


#: models with a whole-GPU adapter (preprocessing, network, decode and NMS in CUDA graphs): what the
#: ``pytorch`` backend uses on a CUDA device unless backend_opts={"fast_path": False}
GPU_FAST_PATH = {
    "retinaface_mnet025": "engines.gpu.detector:GpuRetinaFace",
    "w600k_mbf": "engines.gpu.embedder:GpuArcFace",
}
_FAST_DETECTOR_ARGS = ("input_size", "score_threshold", "nms_threshold", "max_faces")


def _fast_adapter(info: ModelInfo, made, checkpoint_dir, adapter_kwargs: dict, compile_mode: str | None = None):
    """The GPU fast-path adapter for ``info``, keeping ``made`` (the plain PyTorch backend, its module
    released) as ``.backend`` so callers can still describe what runs."""
    from engines.backends.pytorch_backend import load_module

    module, cls = GPU_FAST_PATH[info.name].split(":")
    fast_cls = getattr(importlib.import_module(module), cls)
    kwargs = {k: v for k, v in adapter_kwargs.items() if k in _FAST_DETECTOR_ARGS} if info.task == "detector" else {}
    fast = fast_cls(load_module(info, checkpoint_dir), device=made.device, precision=made.precision,
                    compile_mode=compile_mode, backend=made, **kwargs)
    made.close()
    made.module = None
    made.name = "pytorch-fast"
    return fast


def _adapter(info: ModelInfo):
    module, cls = info.adapter.split(":")
    return getattr(importlib.import_module(module), cls)


def load_model(
    name: str,
    task: str,
    backend: str = "onnxruntime",
    checkpoint_dir: str | Path = "checkpoints",
    device: str = "auto",
    precision: str = "fp32",
    strict_gpu: bool = False,
    warn: Callable[[str], None] | None = None,
    backend_opts: dict | None = None,
    **adapter_kwargs,
):
    info = get_info(name, task)
    opts = dict(backend_opts or {})
    fast_path = opts.pop("fast_path", True)
    compile_mode = opts.pop("compile_mode", None)
    made = create_backend(info, backend, checkpoint_dir, device=device, precision=precision,
                          strict_gpu=strict_gpu, warn=warn, **opts)
    if fast_path and made.name == "pytorch" and made.on_gpu and info.name in GPU_FAST_PATH:
        return _fast_adapter(info, made, checkpoint_dir, adapter_kwargs, compile_mode)
    return _adapter(info)(made, **adapter_kwargs)


def load_detector(name: str = "retinaface_mnet025", backend: str = "onnxruntime", **kwargs):
    """A detector adapter (``detect(image) -> Detections``) on the chosen backend."""
    return load_model(name, "detector", backend, **kwargs)


def load_embedder(name: str = "w600k_mbf", backend: str = "onnxruntime", **kwargs):
    """An ArcFace adapter (``embed(crops) -> (N, 512)`` L2-normalised) on the chosen backend."""
    return load_model(name, "embedder", backend, **kwargs)
