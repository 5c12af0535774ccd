"""MQTT sink (paho-mqtt): events on ``<topic>/events``, the face crop on ``<topic>/<stream>/snapshot``, and a
retained ``<topic>/available`` online/offline (offline is also the last will, so a killed publisher reads as
offline). Everything is QoS 1.

paho's own thread connects and reconnects with backoff; ``send`` only hands a message to paho and returns, so
no caller ever waits on the broker. paho keeps unacknowledged messages and sends them again, in order, after a
reconnect; an event is acknowledged to the outbox when the broker has acknowledged all its messages.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from app.errors import FacestreamError
from app.redact import add_secret

log = logging.getLogger("facestream.events")


def parse_url(url: str) -> tuple[str, int, str | None, str | None, bool]:
    """``mqtt://[user:pass@]host[:port]`` (or ``mqtts://`` for TLS) → host, port, user, password, tls. The
    password is registered as a secret, so it is masked wherever it might be logged."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise FacestreamError(f"MQTT_URL must look like mqtt://[user:pass@]host:port (or mqtts:// for TLS), "
                              f"got scheme {parts.scheme!r}")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise FacestreamError("MQTT_URL has a bad port: use mqtt://host:1883") from None
    password = unquote(parts.password) if parts.password is not None else None
    add_secret(password)
    user = unquote(parts.username) if parts.username is not None else None
    return parts.hostname, port, user, password, parts.scheme == "mqtts"


def check_topic(topic: str) -> str:
    if not topic or any(c in topic for c in "+#\0") or topic.startswith("/") or topic.endswith("/"):
        raise FacestreamError(f"MQTT_TOPIC={topic!r} must be a plain topic prefix such as 'facestream' (no '+', "
                              "'#', or leading/trailing '/')")
    return topic


class MqttSink:
    name = "mqtt"
    window = 64  # events handed to paho and not yet acknowledged by the broker

    def __init__(self, url: str, topic: str = "facestream", client_id: str | None = None,
                 reconnect: tuple[float, float] = (1.0, 30.0), keepalive: int = 30) -> None:
        self.host, self.port, self.user, self.password, self.tls = parse_url(url)
        self.topic = check_topic(topic)
        self.client_id = client_id or f"facestream-{socket.gethostname()}-{os.getpid()}"
        self.reconnect, self.keepalive = reconnect, keepalive
        self.connected = threading.Event()
        self._ack: Callable[[int], None] = lambda seq: None
        self._lock = threading.Lock()
        self._mids: dict[int, int] = {}  # paho message id -> event seq
        self._left: dict[int, int] = {}  # event seq -> messages not yet acknowledged
        self._early: set[int] = set()  # acknowledged before send() had recorded the message id
        self._client = None
        self._unreachable = False

    @property
    def available_topic(self) -> str:
        return f"{self.topic}/available"

    def start(self, ack: Callable[[int], None]) -> None:
        import paho.mqtt.client as mqtt

        self._ack = ack
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True,
                             protocol=mqtt.MQTTv311)
        client.will_set(self.available_topic, "offline", qos=1, retain=True)
        if self.user is not None:
            client.username_pw_set(self.user, self.password)
        if self.tls:
            client.tls_set()
        client.reconnect_delay_set(*self.reconnect)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        self._client = client
        client.connect_async(self.host, self.port, keepalive=self.keepalive)
        client.loop_start()  # paho's thread connects, reconnects with backoff and resends

    def send(self, seq: int, body: bytes) -> bool:
        event = json.loads(body)
        messages = [(f"{self.topic}/events", body, False)]
        crop = (event.get("snapshot") or {}).get("crop")
        if crop:
            messages.append((f"{self.topic}/{event['stream']}/snapshot", base64.b64decode(crop), True))
        with self._lock:
            self._left[seq] = len(messages)
        for topic, payload, retain in messages:
            info = self._publish_in_order(topic, payload, retain)
            if info is None:
                return False  # closed meanwhile: the outbox keeps the event for the next start
            self._record(info.mid, seq)
        return False

    def _publish_in_order(self, topic: str, payload: bytes, retain: bool):
        """Hand one message to paho behind every one it still holds. paho sends a new message at once while
        connected (or connecting: right after its CONNECT), even when messages it held (published during an
        outage, or beyond its in-flight limit) have not gone out yet: they go after the broker's CONNACK, or as
        acknowledgements free room. So wait until it holds none (this is the sink's own thread: no stage
        waits), or publish while it has no socket (queued behind the held ones). Uses paho 2's message table,
        under its own lock."""
        from paho.mqtt.client import mqtt_ms_publish, mqtt_ms_queued

        unsent = (mqtt_ms_publish, mqtt_ms_queued)
        while True:
            client = self._client
            if client is None:
                return None
            table = getattr(client, "_out_messages", None)
            if table is None:  # a paho without that table: publish as it comes
                return client.publish(topic, payload, qos=1, retain=retain)
            with client._out_message_mutex:
                # a socket, even before the broker's CONNACK, sends a new PUBLISH at once, ahead of the held ones
                held = client.socket() is not None and any(m.state in unsent for m in table.values())
                if not held:
                    return client.publish(topic, payload, qos=1, retain=retain)  # queued by paho when offline
            time.sleep(0.005)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if self.connected.is_set():
            info = client.publish(self.available_topic, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # broker too slow: the state may stay online
                info.wait_for_publish(timeout=2.0)
        self.connected.clear()  # a goodbye, not an outage: nothing to warn about
        client.disconnect()
        client.loop_stop()

    # paho's thread ------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s:%d refused the connection: %s — check the user and password in MQTT_URL",
                      self.host, self.port, reason_code)
            return
        log.info("MQTT connected to %s:%d", self.host, self.port)
        self._unreachable = False
        self.connected.set()
        info = client.publish(self.available_topic, "online", qos=1, retain=True)
        with self._lock:  # its acknowledgement comes later on this same thread: no event waits on it
            self._mids[info.mid] = -1

    def _on_connect_fail(self, client, userdata) -> None:
        if not self._unreachable:  # once per outage, not at every retry
            self._unreachable = True
            log.warning("MQTT broker %s:%d cannot be reached: retrying with backoff, events are held (check "
                        "MQTT_URL)", self.host, self.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set():
            log.warning("MQTT broker %s:%d disconnected (%s): reconnecting with backoff, events are held",
                        self.host, self.port, reason_code)
        self.connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            seq = self._mids.pop(mid, None)
            if seq is None:
                self._early.add(mid)
            if seq is None or seq < 0:
                return
        self._done(seq)

    def _record(self, mid: int, seq: int) -> None:
        with self._lock:
            if mid not in self._early:
                self._mids[mid] = seq
                return
            self._early.discard(mid)
        self._done(seq)

    def _done(self, seq: int) -> None:
        with self._lock:
            self._left[seq] -= 1
            finished = self._left[seq] == 0
            if finished:
                del self._left[seq]
        if finished:
            self._ack(seq)
