"""How the events join a pipeline: a run id, the queues the identify stage's tap writes, and the publisher
stage, only when a sink is configured (no MQTT_URL and no WEBHOOK_URL: no publisher process, nothing sent)."""

from __future__ import annotations

import secrets
import time

from app.events.tap import EventsLink
from app.settings import Settings

PUBLISHER = "publish"  # the publisher's stage name (metrics row, process name fs-publish)


def new_run_id() -> str:
    """``20261204T123512-3f9a1c``: sortable, unique enough that two runs started in one second differ."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def events_link(settings: Settings, run: str | None = None) -> EventsLink:
    """The link for this run (queues of the runtime's ``spawn`` context); a bad MQTT_URL or WEBHOOK_URL fails
    here, before any process starts."""
    import multiprocessing as mp

    from app.events.publisher import sinks_from_settings

    spawn = mp.get_context("spawn")
    sinks = sinks_from_settings(settings)
    return EventsLink(run=run or new_run_id(), events=spawn.Queue() if sinks else None, marks=spawn.Queue())


def add_publisher(pipe, settings: Settings, link: EventsLink) -> None:
    """The publisher stage, when the link carries events."""
    from app.events.stage import PublisherStage

    if link.events is not None:
        pipe.stage(PUBLISHER, PublisherStage(settings, link))
