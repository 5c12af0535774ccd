"""The one parser of device strings ("auto", "cpu", "cuda", "cuda:N"), so every backend and the settings agree.

Each backend then decides what the parsed device means for it (TensorRT refuses the CPU; ONNX Runtime and PyTorch
resolve "auto" against what they can see); the grammar and its error message live here only.
"""

from __future__ import annotations

from dataclasses import dataclass

from engines.errors import EngineError

#: what a user may write, for error messages and help texts
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


class BadDevice(EngineError, ValueError):
    """A device string that is none of auto, cpu, cuda, cuda:N."""


@dataclass(frozen=True)
class Device:
    """A parsed device: ``kind`` is "auto", "cpu" or "cuda"; ``index`` is the CUDA ordinal (0 for "cuda")."""

    kind: str
    index: int = 0

    @property
    def is_cpu(self) -> bool:
        return self.kind == "cpu"

    @property
    def wants_cuda(self) -> bool:
        """Asked for a GPU outright (``auto`` may still end up on the CPU)."""
        return self.kind == "cuda"

    def __str__(self) -> str:
        return f"cuda:{self.index}" if self.kind == "cuda" else self.kind


def parse_device(text: str) -> Device:
    """``text`` as a Device, or BadDevice naming the accepted forms."""
    value = str(text).strip().lower()
    if value in ("auto", "cpu"):
        return Device(value)
    if value == "cuda":
        return Device("cuda", 0)
    if value.startswith("cuda:") and value[5:].isdigit():
        return Device("cuda", int(value[5:]))
    raise BadDevice(f"device {text!r} is not valid: use {DEVICE_CHOICES}")
