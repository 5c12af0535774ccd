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
    made = create_backend(info, backend, checkpoint_dir, device=device, precision=precision,
                          strict_gpu=strict_gpu, warn=warn, **(backend_opts or {}))
    return _adapter(info)(made, **adapter_kwargs)


def load_detector(name: str = "retinaface_mnet025", backend: str = "onnxruntime", **kwargs):
    """A detector adapter (``detect(image) -> Detections``) on the chosen backend."""
    return load_model(name, "detector", backend, **kwargs)


def load_embedder(name: str = "w600k_mbf", backend: str = "onnxruntime", **kwargs):
    """An ArcFace adapter (``embed(crops) -> (N, 512)`` L2-normalised) on the chosen backend."""
    return load_model(name, "embedder", backend, **kwargs)
