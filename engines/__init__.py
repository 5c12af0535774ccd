"""Inference core: models, their adapters and the backends that run them.

Nothing here imports ``app``: ``from engines import ...`` works in a notebook on its own.
"""

from engines.types import Detections

__all__ = ["Detections"]
