"""Uploaded photos: size-limited, and each must decode as an image, before anything reaches the library."""

from __future__ import annotations

import os

import cv2
import numpy as np
from fastapi import UploadFile

from app.web.errors import WebError


def clean_name(filename: str | None, default: str = "photo") -> str:
    """The file's base name only (never a path), printable and short: it is stored and shown."""
    name = os.path.basename((filename or "").replace("\\", "/")).strip()
    name = "".join(c for c in name if c.isprintable())[:100]
    return name or default


def decode(data: bytes, name: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise WebError(422, f"{name} is not an image that can be read (JPEG, PNG, WebP or BMP): send a photo")
    return img


def read_photo(upload: UploadFile, max_bytes: int) -> tuple[str, bytes]:
    """(name, bytes) of one upload; refused whole when larger than ``max_bytes`` or not an image."""
    name = clean_name(upload.filename)
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise WebError(413, f"{name} is larger than the {max_bytes / 1e6:g} MB upload limit (UPLOAD_MAX_MB): "
                            "send a smaller photo")
    decode(data, name)
    return name, data


def read_photos(uploads: list[UploadFile], max_bytes: int) -> list[tuple[str, bytes]]:
    """Every upload checked before any is used: one bad file refuses the request and nothing changes."""
    if not uploads:
        raise WebError(422, "no photo: send at least one image file in the 'photos' field")
    return [read_photo(u, max_bytes) for u in uploads]
