"""What the two model stages (detect, embed+track) take from the settings to load a model: not a stage itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.settings import Settings, usable_cores


@dataclass(frozen=True)
class ModelLoad:
    """What loading a model takes: where the files are, which device and precision, how strict about the GPU,
    the detector's input size (a GPU backend's static shape), compilation, CPU threads."""

    checkpoint_dir: str
    device: str
    precision: str
    strict_gpu: bool
    det_size: int
    compile: bool
    threads: int | None = None

    @classmethod
    def of(cls, settings: Settings, threads: int | None = None) -> ModelLoad:
        return cls(settings.checkpoint_dir, settings.device, settings.gpu_precision, settings.strict_gpu,
                   settings.det_size, settings.gpu_compile, threads)

    def kwargs(self, warn: Callable[[str], None] | None = None) -> dict:
        """The keyword arguments of ``engines.model_zoo``'s loaders."""
        return {
            "checkpoint_dir": self.checkpoint_dir,
            "device": self.device,
            "precision": self.precision,
            "strict_gpu": self.strict_gpu,
            "warn": warn,
            "backend_opts": {"threads": self.threads, "det_size": (self.det_size, self.det_size),
                             "compile_mode": "default" if self.compile else None},
        }


def model_kwargs(settings: Settings, warn: Callable[[str], None] | None = None, threads: int | None = None) -> dict:
    """What every model load takes from the settings (the tools that load one model outside a pipeline)."""
    return ModelLoad.of(settings, threads).kwargs(warn)


def stage_threads(settings: Settings) -> int:
    """CPU threads for one of the two inference stages that run side by side in the pipeline."""
    return settings.infer_threads or max(1, usable_cores() // 2)
