"""Helpers the subcommands share: settings with CLI overrides, image reading, backend specs."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from app.errors import FacestreamError
from app.settings import Settings

log = logging.getLogger("facestream")


def load_settings(args, **overrides: str | None) -> Settings:
    """The settings, with one warning line per unknown or renamed key, said here, once, in the parent."""
    if args.env != ".env" and not Path(args.env).is_file():  # .env is optional; a file named on purpose is not
        raise FacestreamError(f"--env {args.env}: file not found — check the path, or leave --env out to read .env")
    settings = Settings.load(args.env, {k: str(v) for k, v in overrides.items() if v is not None}, warn=_warn)
    logging.getLogger().setLevel("DEBUG" if args.debug else settings.log_level)
    return settings


def without_gpu(settings: Settings) -> Settings:
    """TensorRT asked for on a machine with no CUDA GPU: say so once, here, naming the key, and use the CPU
    default (onnxruntime) instead; not PyTorch, and not advice to install a CUDA binding for a GPU that is not
    there. STRICT_GPU=true keeps it, to fail at start-up as asked."""
    keys = {f.name: f.metadata["key"] for f in fields(settings) if f.name in ("detector_backend", "embedding_backend")
            and getattr(settings, f.name) == "tensorrt"}
    if not keys or settings.strict_gpu:
        return settings
    from engines.backends.cuda_probe import cuda_gpus

    if cuda_gpus():
        return settings
    for key in keys.values():
        _warn(f"{key}=tensorrt needs an NVIDIA GPU and this machine has none: using onnxruntime on the CPU "
              "(the default) instead")
    device = "cpu" if settings.device.startswith("cuda") else settings.device  # no GPU to ask for either
    return replace(settings, **dict.fromkeys(keys, "onnxruntime"), device=device)


def _warn(line: str) -> None:
    print(f"facestream: warning: {line}", file=sys.stderr)


class ImageUnreadable(FacestreamError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"image {path}: {reason}")
        self.reason = reason


def read_image(path: str | Path) -> np.ndarray:
    import cv2

    path = Path(path)
    if not path.is_file():
        raise ImageUnreadable(path, "file not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageUnreadable(path, "cannot be read (not an image, or corrupt): use a JPEG or PNG")
    return image


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass(frozen=True)
class BackendSpec:
    """``BACKEND[:DEVICE][:PRECISION]``, e.g. ``onnxruntime``, ``pytorch:cuda:fp16``, ``pytorch:cpu``."""

    backend: str
    device: str = "auto"
    precision: str = "fp32"

    @classmethod
    def parse(cls, text: str) -> BackendSpec:
        parts = text.split(":")
        backend, device, precision = parts[0], "auto", "fp32"
        rest = parts[1:]
        i = 0
        while i < len(rest):
            tok = rest[i]
            if tok in ("fp16", "fp32"):
                precision = tok
            elif tok == "cuda" and i + 1 < len(rest) and rest[i + 1].isdigit():
                device = f"cuda:{rest[i + 1]}"
                i += 1
            elif tok in ("cpu", "cuda", "auto"):
                device = tok
            else:
                raise FacestreamError(f"bad backend spec {text!r}: use BACKEND[:cpu|cuda[:N]][:fp16|fp32]")
            i += 1
        return cls(backend, device, precision)

    def __str__(self) -> str:
        return f"{self.backend}:{self.device}:{self.precision}"
