"""What the two model stages (detect, embed+track) take from the settings to load a model: not a stage itself."""

from __future__ import annotations

from collections.abc import Callable

from app.settings import Settings, usable_cores


def model_kwargs(settings: Settings, warn: Callable[[str], None] | None = None, threads: int | None = None) -> dict:
    """What every model load takes from the settings: checkpoints, device, precision, strictness, CPU threads."""
    return {
        "checkpoint_dir": settings.checkpoint_dir,
        "device": settings.device,
        "precision": settings.gpu_precision,
        "strict_gpu": settings.strict_gpu,
        "warn": warn,
        "backend_opts": {"threads": threads, "det_size": (settings.det_size, settings.det_size),
                         "compile_mode": "default" if settings.gpu_compile else None},
    }


def stage_threads(settings: Settings) -> int:
    """CPU threads for one of the two inference stages that run side by side in the pipeline."""
    return settings.infer_threads or max(1, usable_cores() // 2)
