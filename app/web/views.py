"""The library's answers as JSON (attribute access only: works with h9's dataclasses and the tests' fakes)."""

from __future__ import annotations

from typing import Any


def photo_json(person_id: str, photo: Any) -> dict:
    pid = str(getattr(photo, "id", ""))
    return {"id": pid, "filename": getattr(photo, "filename", ""), "url": f"/api/people/{person_id}/photos/{pid}"}


def person_json(person: Any) -> dict:
    pid = str(person.id)
    photos = [photo_json(pid, p) for p in getattr(person, "photos", [])]
    return {"id": pid, "name": person.name, "photos": photos, "photo_count": len(photos),
            "embeddings": int(getattr(person, "embeddings", 0))}


def enrol_json(view: Any) -> dict:
    """An EnrolView: its person plus whatever counts it carries (added, already enrolled, ...)."""
    person = getattr(view, "person", None)
    out = {"person": person_json(person)} if person is not None else {}
    fields = getattr(view, "__dataclass_fields__", None) or vars(view)
    for key in fields:
        value = getattr(view, key, None)
        if key != "person" and isinstance(value, (int, float, str, bool, list)) and not key.startswith("_"):
            out[key] = value
    return out


def sniff_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"BM"):
        return "image/bmp"
    return "image/jpeg"
