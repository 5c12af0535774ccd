"""The control channel: framing, sizes, the socket's owner-only mode, stale sockets, and a clear timeout."""

from __future__ import annotations

import socket
import stat
import struct
import threading

import numpy as np
import pytest

from app.control import protocol
from app.control.client import ControlClient, NoOwner
from app.control.server import ControlServer, answers
from app.library.errors import DuplicateName, GalleryUnavailable, LibraryError

pytestmark = pytest.mark.timeout(60)


def test_bytes_and_arrays_survive_a_round_trip():
    message = {"op": "add", "args": {"photos": [["a.jpg", b"\xff\xd8\x00"]], "x": np.eye(2, 512, dtype=np.float32),
                                     "n": np.int64(3), "name": "Zoë"}}
    back = protocol.loads(protocol.dumps(message)[4:])
    assert back["args"]["photos"] == [["a.jpg", b"\xff\xd8\x00"]] and back["args"]["name"] == "Zoë"
    assert back["args"]["n"] == 3 and np.array_equal(back["args"]["x"], np.eye(2, 512, dtype=np.float32))


def test_an_oversized_message_is_refused_on_both_sides(monkeypatch):
    monkeypatch.setattr(protocol, "MAX_MESSAGE", 1000)
    with pytest.raises(protocol.ProtocolError, match="over the control channel"):
        protocol.dumps({"blob": b"x" * 2000})
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack(">I", 5000) + b"{}")
        with pytest.raises(protocol.ProtocolError, match="over the 1000 byte limit"):
            protocol.recv(b)


def serve(tmp_path, handler) -> ControlServer:
    server = ControlServer(tmp_path / "faces.sock", handler)
    assert server.start()
    return server


def test_replies_errors_and_owner_only_mode(tmp_path):
    def handler(op, args):
        if op == "echo":
            return args
        if op == "taken":
            raise DuplicateName("'Ada' is already the name of person ada")
        raise RuntimeError("boom")

    server = serve(tmp_path, handler)
    try:
        assert stat.S_IMODE((tmp_path / "faces.sock").stat().st_mode) == 0o600
        client = ControlClient(server.path, timeout=5)
        assert client.call("echo", photo=b"\x00\x01", k=2) == {"photo": b"\x00\x01", "k": 2}
        with pytest.raises(DuplicateName, match="already the name") as err:
            client.call("taken")
        assert err.value.status == 409
        with pytest.raises(LibraryError, match="other failed in the pipeline: RuntimeError: boom"):
            client.call("other")
    finally:
        server.stop()
    assert not (tmp_path / "faces.sock").exists()
    with pytest.raises(NoOwner):
        ControlClient(tmp_path / "faces.sock").call("echo")


def test_a_dead_owners_socket_is_replaced_and_a_live_one_is_left_alone(tmp_path):
    path = tmp_path / "faces.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: what a kill -9 leaves
    assert path.exists() and not answers(path)
    first = serve(tmp_path, lambda op, args: "first")
    try:
        second = ControlServer(path, lambda op, args: "second")
        assert not second.start()  # the first still answers: it keeps the socket
        assert ControlClient(path, timeout=5).call("who") == "first"
    finally:
        first.stop()


def test_a_request_that_takes_too_long_says_so(tmp_path):
    release = threading.Event()
    server = serve(tmp_path, lambda op, args: release.wait(10))
    try:
        with pytest.raises(GalleryUnavailable, match="did not answer slow within 1 s"):
            ControlClient(server.path, timeout=1).call("slow")
    finally:
        release.set()
        server.stop()


def test_a_malformed_request_gets_one_line_and_the_server_goes_on(tmp_path):
    server = serve(tmp_path, lambda op, args: "ok")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(server.path))
            body = b"not json"
            s.sendall(struct.pack(">I", len(body)) + body)
            reply = protocol.recv(s)
        assert reply["ok"] is False and "not JSON" in reply["message"]
        assert ControlClient(server.path, timeout=5).call("again") == "ok"
    finally:
        server.stop()
