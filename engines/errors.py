"""Errors the inference core raises; each message is one line that names the problem and the fix."""


class EngineError(RuntimeError):
    """Base class: a user-facing, one-line error from the inference core."""

    user_facing = True


class ModelFileError(EngineError):
    """A model file is missing, corrupt or of the wrong kind."""


class BackendUnavailable(EngineError):
    """A backend cannot run here (package missing, no GPU, engine unbuildable)."""


class NoCudaGpu(BackendUnavailable):
    """A GPU-only backend was asked for where there is no CUDA GPU (or the device is the CPU): the registry goes
    straight to the CPU default rather than to another GPU backend."""
