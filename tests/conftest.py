"""Shared fixtures: real media and real model files from ../shared, fetched through the project's own code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACESTREAM_SHARED", REPO.parent / "shared")).resolve()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip each test marked ``needs(...)`` that this machine cannot run (tests/needs.py says why). Conditions are
    asked only if a collected test is marked, once each."""
    from tests.needs import why_skip

    for item in items:
        if item.get_closest_marker("needs") is not None:
            reason = why_skip(item)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared folder not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def media_dir(shared_dir: Path) -> Path:
    return shared_dir / "media"


@pytest.fixture(scope="session")
def models_mirror(shared_dir: Path) -> Path:
    return shared_dir / "models"


@pytest.fixture(scope="session")
def checkpoint_dir(models_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoints folder holding every shipped model plus the exported RetinaFace ONNX."""
    from engines.fetch import ensure_models

    out = tmp_path_factory.mktemp("checkpoints")
    ensure_models(out, mirror=models_mirror, export=True, quiet=True)
    return out
