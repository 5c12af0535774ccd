"""How the events join the pipeline list: a run id, the spool and marks folders the identify stage's tap
writes, and the publisher stage, only when a sink is configured (no MQTT_URL and no WEBHOOK_URL: no
publisher process, nothing derived or sent)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from app.events.tap import EventsLink
from app.settings import Settings

PUBLISHER = "publish"  # the publisher's stage name (metrics row, process name fs-publish)


def new_run_id() -> str:
    """``20261204T123512-3f9a1c``: sortable, unique enough that two runs started in one second differ."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def events_link(settings: Settings, marks: str | None, run: str | None = None) -> EventsLink:
    """The link for this run: events spooled under EVENTS_DIR/spool when a sink is configured, time-to-name
    marks in ``marks`` (a folder the caller made and removes). A bad MQTT_URL or WEBHOOK_URL fails here,
    before any process starts."""
    from app.events.publisher import sinks_from_settings

    sinks = sinks_from_settings(settings)
    spool = str(Path(settings.events_dir).resolve() / "spool") if sinks else None
    return EventsLink(run=run or new_run_id(), events=spool, marks=marks)


def publisher_step(settings: Settings, link: EventsLink, out_bytes: int):
    """The publisher's entry of the pipeline list (between identify and display), or None when the link
    carries no events."""
    from app.events.stage import PublisherStage
    from app.runtime import Step

    if link.events is None:
        return None
    return Step(PUBLISHER, PublisherStage(settings, link), "published", out_bytes)
