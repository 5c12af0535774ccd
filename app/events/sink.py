"""What the publisher needs from a destination of events (MQTT, a webhook): send one, in order, and say when
the destination has it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class SendFailed(Exception):
    """The destination did not take the event now (down, refused, timed out): retried later, in order. The
    message is one line naming the problem and, where there is one, the fix."""


class Sink(Protocol):
    name: str  # also the queue's name for this sink in the outbox
    window: int  # events that may be sent but not yet acknowledged (1: strictly one at a time)

    def start(self, ack: Callable[[int], None]) -> None:
        """Connect (without blocking); ``ack(seq)`` is to be called when an event sent later is acknowledged."""

    def send(self, seq: int, body: bytes) -> bool:
        """Send one event's JSON: True when the destination has it now, False when ``ack(seq)`` will say so
        later; raise SendFailed to have it sent again after a backoff."""

    def close(self) -> None:
        """Say goodbye where the protocol has a way (MQTT: ``available`` offline) and release the connection."""
