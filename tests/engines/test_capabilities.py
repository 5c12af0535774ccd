"""Every model class declares its capabilities, and each declaration matches the methods it has."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from engines.capabilities import PROMISED_METHODS, Capabilities, FaceDetector, FaceEmbedder
from engines.model_zoo import GPU_FAST_PATH, MODELS, load_detector, load_embedder


def _classes() -> dict[str, type]:
    targets = {info.adapter for info in MODELS.values()} | set(GPU_FAST_PATH.values())
    found = {}
    for target in sorted(targets):
        module, name = target.split(":")
        try:
            found[target] = getattr(importlib.import_module(module), name)
        except ImportError as exc:  # the GPU adapters need torch
            pytest.skip(f"{target} needs {exc.name}")
    return found


def test_every_model_class_declares_what_it_can_do_and_has_exactly_those_methods():
    for target, cls in _classes().items():
        caps = cls.capabilities
        assert isinstance(caps, Capabilities), target
        for flag, methods in PROMISED_METHODS.items():
            has = [callable(getattr(cls, m, None)) for m in methods]
            assert all(has) == getattr(caps, flag), f"{target}: {flag} vs {methods}"


@pytest.mark.timeout(120)
def test_loaded_models_satisfy_the_protocols(checkpoint_dir: Path):
    detector = load_detector(checkpoint_dir=checkpoint_dir, device="cpu")
    embedder = load_embedder(checkpoint_dir=checkpoint_dir, device="cpu")
    try:
        assert isinstance(detector, FaceDetector) and isinstance(embedder, FaceEmbedder)
        assert detector.capabilities.splits_preprocess and not detector.capabilities.aligns_on_device
        assert embedder.capabilities == Capabilities()
        assert not detector.backend.on_gpu and embedder.embedding_size == 512
    finally:
        detector.close()
        embedder.close()
