"""Inference backends behind one interface, created by name through the registry."""

from engines.backends.base import Backend
from engines.backends.registry import FALLBACK_ORDER, available_backends, create_backend

__all__ = ["Backend", "FALLBACK_ORDER", "available_backends", "create_backend"]
