"""Errors the inference core raises; each message is one line that names the problem and the fix."""


class EngineError(RuntimeError):
    """Base class: a user-facing, one-line error from the inference core."""

    user_facing = True


class ModelFileError(EngineError):
    """A model file is missing, corrupt or of the wrong kind."""


class BackendUnavailable(EngineError):
    """A backend cannot run here (package missing, no GPU, engine unbuildable)."""
