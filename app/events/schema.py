"""The one event schema: what leaves the pipeline when a person appears, leaves, or a stranger stays.

Every event has the same keys (``null`` where a key does not apply), so a consumer parses one shape. The event
id is derived from the deduplication key (run, stream, track, type): a resent event carries the same id, so a
consumer that keeps the ids it has seen never acts twice (MQTT QoS 1 and webhook retries are at-least-once).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from app.errors import FacestreamError

SCHEMA_VERSION = 1
APPEARED = "person.appeared"
LEFT = "person.left"
UNKNOWN_APPEARED = "unknown.appeared"
TYPES = (APPEARED, LEFT, UNKNOWN_APPEARED)
_NAMESPACE = uuid.UUID("5f1d7a2e-3c4b-4e8a-9a51-0b7c6d2e8f10")  # facestream's, fixed: ids stay stable
_SAFE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # usable in an MQTT topic level (no '/', '+', '#')
_JPEG = b"\xff\xd8"


class EventError(FacestreamError):
    """An event that does not follow the schema (a bug in its producer, or a hand-made event)."""


def new_run_id() -> str:
    """A pipeline run's id: track ids restart with each run, so (run, stream, track) names one track."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def stream_name(stream: int | str) -> str:
    """A stream's name as events and MQTT topics carry it (a stream index becomes its digits)."""
    name = str(stream)
    if not _SAFE.match(name):
        raise EventError(f"stream name {name!r} cannot be an MQTT topic level: use letters, digits, '_', '.', "
                         "':' or '-' (at most 64)")
    return name


def dedup_key(run: str, stream: str, track: int, type: str) -> str:
    """The key a publisher keeps so that one track never gets a second event of one type."""
    return f"{run}/{stream}/{track}/{type}"


def event_id(key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, key))


@dataclass
class Event:
    """One event. ``name``/``person_id`` are set only for a known person (``known``); an unknown face carries
    ``nearest`` (the closest enrolled person, below the match threshold) and its ``similarity``. Times are
    capture times (seconds since the epoch) of frames, not of sending. ``crop_jpeg`` is the best crop of the
    face seen so far, ``frame_jpeg`` optionally the whole frame it came from."""

    type: str
    run: str
    stream: str
    track: int
    known: bool
    box: list[float]
    frame: int
    captured_at: float
    first_seen: float
    name: str | None = None
    person_id: str | None = None
    similarity: float | None = None
    nearest: dict[str, str] | None = None
    last_seen: float | None = None
    duration: float | None = None
    best_similarity: float | None = None
    crop_jpeg: bytes | None = field(default=None, repr=False)
    frame_jpeg: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def key(self) -> str:
        return dedup_key(self.run, self.stream, self.track, self.type)

    @property
    def id(self) -> str:
        return event_id(self.key)

    def validate(self) -> None:
        """Raise EventError naming the first field that breaks the schema."""
        if self.type not in TYPES:
            raise EventError(f"event type {self.type!r} is not one of {', '.join(TYPES)}")
        stream_name(self.stream)
        if not self.run or "/" in self.run:
            raise EventError(f"event run id {self.run!r} must be non-empty and contain no '/'")
        if isinstance(self.track, bool) or not isinstance(self.track, int) or self.track < 0:
            raise EventError(f"event track {self.track!r} must be a whole number >= 0")
        if len(self.box) != 4 or not all(_finite(v) for v in self.box):
            raise EventError(f"event box {self.box!r} must be four finite numbers x1, y1, x2, y2")
        for key in ("captured_at", "first_seen"):
            if not _finite(getattr(self, key)):
                raise EventError(f"event {key} must be a finite time in seconds since the epoch")
        if self.known and not (self.name and self.person_id):
            raise EventError("a known person's event needs both name and person_id")
        if not self.known and (self.name or self.person_id):
            raise EventError("an unknown face's event must not carry a name or person_id (use nearest)")
        if self.type == LEFT and not (_finite(self.last_seen) and _finite(self.duration)):
            raise EventError("a person.left event needs last_seen and duration")
        for key in ("similarity", "best_similarity"):
            value = getattr(self, key)
            if value is not None and not (_finite(value) and -1.0 <= value <= 1.0):
                raise EventError(f"event {key}={value!r} must be a cosine similarity in -1..1")
        for key in ("crop_jpeg", "frame_jpeg"):
            value = getattr(self, key)
            if value is not None and not value.startswith(_JPEG):
                raise EventError(f"event {key} is not JPEG data")

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data (images as base64), keys in schema order."""
        d = asdict(self)
        crop, frame = d.pop("crop_jpeg"), d.pop("frame_jpeg")
        return {"schema": SCHEMA_VERSION, "id": self.id, **d,
                "snapshot": {"crop": _b64(crop), "frame": _b64(frame)}}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()

    def summary(self) -> dict[str, Any]:
        """The event without images: what a publisher keeps about an announced track."""
        d = self.to_dict()
        d.pop("snapshot")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        """Parse and validate an event (from JSON or a queue); EventError names what is wrong."""
        if not isinstance(d, dict):
            raise EventError(f"an event is a JSON object, not {type(d).__name__}")
        if d.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise EventError(f"event schema {d.get('schema')!r} is not {SCHEMA_VERSION}: upgrade the consumer")
        snap = d.get("snapshot") or {}
        known = {f for f in cls.__dataclass_fields__ if f not in ("crop_jpeg", "frame_jpeg")}
        missing = {"type", "run", "stream", "track", "known", "box", "frame", "captured_at", "first_seen"} - set(d)
        if missing:
            raise EventError(f"event lacks {', '.join(sorted(missing))}")
        try:
            event = cls(**{k: v for k, v in d.items() if k in known},
                        crop_jpeg=_unb64(snap.get("crop")), frame_jpeg=_unb64(snap.get("frame")))
        except TypeError as exc:
            raise EventError(f"bad event: {exc}") from None
        if "id" in d and d["id"] != event.id:
            raise EventError(f"event id {d['id']!r} does not match its run, stream, track and type")
        return event

    @classmethod
    def from_json(cls, data: bytes | str) -> Event:
        try:
            return cls.from_dict(json.loads(data))
        except json.JSONDecodeError as exc:
            raise EventError(f"an event is not valid JSON: {exc}") from None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise EventError("event snapshot is not base64 text") from None
