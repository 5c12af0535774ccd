"""Real endpoints for the sink tests: a mosquitto broker started on 127.0.0.1 with its own config and
persistence, and a webhook receiver (http.server) that can be started late and stopped."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.events.schema import APPEARED, LEFT, Event
from app.events.webhook import SIGNATURE_HEADER, verify_signature

JPEG = b"\xff\xd8\xff\xe0" + b"face" * 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def make_events(tracks: range, run: str = "run1") -> list[Event]:
    """person.appeared then person.left for each track, as a deriver would emit them."""
    out = []
    for t in tracks:
        common = dict(run=run, stream="cam1", track=t, known=True, name=f"Person {t}", person_id=f"p-{t}",
                      similarity=0.6, box=[1.0, 2.0, 30.0, 40.0], first_seen=100.0 + t, crop_jpeg=JPEG)
        out.append(Event(type=APPEARED, frame=10 * t, captured_at=100.5 + t, **common))
        out.append(Event(type=LEFT, frame=10 * t + 5, captured_at=103.0 + t, last_seen=103.0 + t, duration=3.0,
                         best_similarity=0.65, **common))
    return out


class Broker:
    """mosquitto on 127.0.0.1:port, persistence on, in its own folder; stop() and start() keep its state."""

    def __init__(self, exe: str, folder: Path) -> None:
        self.exe, self.folder, self.port = exe, folder, free_port()
        self.proc: subprocess.Popen | None = None
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder}/\nautosave_interval 1\n"
                             f"log_dest file {folder}/mosquitto.log\nuser {getpass.getuser()}\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def listening() -> bool:
            assert self.proc.poll() is None, (self.folder / "mosquitto.log").read_text()
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, 10.0, "mosquitto to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # a clean stop: mosquitto saves its persistence file
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def broker(tmp_path):
    exe = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if exe is None:
        if shutil.which("apt-get") and os.geteuid() == 0:  # setup.sh could have installed it: not a skip
            pytest.fail("mosquitto is not installed: run scripts/setup.sh (it runs apt-get install mosquitto)")
        pytest.skip("mosquitto")
    folder = tmp_path / "broker"
    folder.mkdir()
    b = Broker(exe, folder)
    b.start()
    yield b
    b.stop()


class Subscriber:
    """A persistent QoS 1 subscriber (clean_session False): what the broker queued for it while it was away
    arrives when it is back."""

    def __init__(self, broker: Broker, topics: list[str], client_id: str = "test-subscriber",
                 clean: bool = False) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.client.reconnect_delay_set(0.2, 1.0)
        self.sessions: list[bool] = []  # session_present of each connection

        def on_connect(client, userdata, flags, reason_code, properties):
            self.sessions.append(flags.session_present)
            if not flags.session_present:  # subscribe once: later the broker's stored session must hold it
                client.subscribe([(t, 1) for t in topics])

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, bool(m.retain)))
        self.client.connect_async("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(10), "subscriber did not subscribe"

    def on(self, topic: str) -> list[bytes]:
        return [payload for t, payload, _ in list(self.messages) if t == topic]

    def event_ids(self) -> list[str]:
        return [json.loads(p)["id"] for p in self.on("facestream/events")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Receiver:
    """A webhook receiver on 127.0.0.1:port: records every POST; answers 401 when ``secret`` is set and the
    signature does not verify."""

    def __init__(self, port: int, secret: str | None = None) -> None:
        self.port, self.secret = port, secret
        self.received: list[tuple[dict, bytes]] = []
        self.rejected = 0
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.secret and not verify_signature(body, self.headers.get(SIGNATURE_HEADER),
                                                            receiver.secret):
                    receiver.rejected += 1
                    self.send_response(401)
                else:
                    receiver.received.append((dict(self.headers), body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def ids(self) -> list[str]:
        return [json.loads(body)["id"] for _, body in self.received]
