"""Prometheus metrics: the text parses with prometheus-client's own parser and says what the shared rows say,
in-process and scraped from a real run on METRICS_PORT."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.errors import FacestreamError
from app.observe import counters
from app.observe.prom import render_metrics
from app.observe.server import MetricsServer
from app.protocol import Health
from app.runtime.metrics import RUNNING, Metrics


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a /metrics body."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(port: int, token: str = "") -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.read().decode()


@pytest.fixture
def block():
    metrics = Metrics.create(["capture", "identify", "display", "publish"])
    yield metrics
    metrics.close()


@pytest.mark.timeout(30)
def test_figures_are_the_rows_figures(block):
    now = time.time()
    capture, identify, display = block.writer("capture"), block.writer("identify"), block.writer("display")
    capture.status(RUNNING)
    capture.health(Health.DOWN, "source: reconnecting in 2 s", 1.5)
    for lat in (0.004, 0.03, 0.2, 3.0):
        display.tick(busy=0.01, ts=now - lat)
    display.drop(2)
    identify.count(counters.FACES, 7)
    identify.count(counters.NAMED, 4)
    identify.count(counters.UNKNOWN, 3)
    identify.set_counter(counters.GALLERY, 6)
    block.writer("publish").set_counter(counters.EVENTS_SENT, 5)
    body, kind = render_metrics(block)
    assert kind.startswith("text/plain")
    got = samples(body.decode())
    stats = {s.name: s for s in block.snapshot()}
    assert got[("facestream_stage_frames_total", (("stage", "display"),))] == stats["display"].items == 4
    assert got[("facestream_stage_drops_total", (("stage", "display"),))] == stats["display"].drops == 2
    assert got[("facestream_stage_busy_seconds_total", (("stage", "display"),))] == pytest.approx(
        stats["display"].busy_s)
    assert got[("facestream_stage_up", (("stage", "capture"),))] == 1
    assert got[("facestream_stage_up", (("stage", "display"),))] == 0  # never set running
    assert got[("facestream_source_up", (("stage", "capture"),))] == 0  # reconnecting
    le = {dict(labels)["le"]: v for (name, labels), v in got.items()
          if name == "facestream_latency_seconds_bucket" and dict(labels)["stage"] == "display"}
    assert le["0.01"] == 1 and le["0.05"] == 2 and le["0.25"] == 3 and le["2.5"] == 3 and le["+Inf"] == 4
    assert got[("facestream_latency_seconds_count", (("stage", "display"),))] == 4
    assert got[("facestream_latency_seconds_sum", (("stage", "display"),))] == pytest.approx(3.234, abs=0.05)
    assert got[("facestream_faces_detected_total", ())] == 7
    assert got[("facestream_faces_named_total", ())] == 4
    assert got[("facestream_faces_unknown_total", ())] == 3
    assert got[("facestream_gallery_people", ())] == 6
    assert got[("facestream_events_sent_total", ())] == 5


@pytest.mark.timeout(30)
def test_server_answers_503_before_the_pipeline_then_asks_for_the_token(block):
    spec = [None]
    server = MetricsServer(0, lambda: spec[0], token="tok-3").start()
    try:
        with pytest.raises(urllib.error.HTTPError) as no_token:
            scrape(server.port)
        assert no_token.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as early:
            scrape(server.port, "tok-3")
        assert early.value.code == 503
        spec[0] = block.spec
        block.writer("capture").tick(3)
        assert samples(scrape(server.port, "tok-3"))[("facestream_stage_frames_total", (("stage", "capture"),))] == 3
    finally:
        server.close()


def test_a_taken_port_is_one_line(block):
    first = MetricsServer(0, lambda: block.spec)
    try:
        with pytest.raises(FacestreamError, match=f"METRICS_PORT={first.port}: cannot listen .* choose a free port"):
            MetricsServer(first.port, lambda: block.spec)
    finally:
        first.http.server_close()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_scraped_during_a_run_the_figures_agree_with_the_track_log(enrolled_env, broker, media_dir, tmp_path):
    """A run whose MQTT broker is down: after the last frame the publisher waits for it, and meanwhile the
    scrape must say what the track log says (frames, faces, names) and count the events owed, not sent."""
    from tests.app.events.conftest import free_port, wait_for
    from tests.app.faults.servers import fault_env, lines, start_run, stderr_of

    broker.stop()
    port, log = free_port(), tmp_path / "tracks.jsonl"
    env = fault_env(enrolled_env, tmp_path, METRICS_PORT=port, MQTT_URL=broker.url, EVENTS_DIR=tmp_path / "ev")
    proc = start_run(env, "--headless", "--log-tracks", str(log), "--source",
                     str(media_dir / "video/short_hamilton_clip.mp4"))
    try:
        wait_for(lambda: lines(log) >= 275 or proc.poll() is not None, 300, "every frame")
        key = ("facestream_stage_frames_total", (("stage", "display"),))
        got = wait_for(lambda: (s := samples(scrape(port))).get(key) == 275 and s, 20, "display's 275th frame")
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        faces = [f for r in rows for f in r["faces"]]
        named = [f for f in faces if f["name"] != "unknown"]
        assert got[("facestream_faces_detected_total", ())] == len(faces)
        assert got[("facestream_faces_named_total", ())] == len(named) > 0
        assert got[("facestream_faces_unknown_total", ())] == len(faces) - len(named)
        assert got[("facestream_latency_seconds_count", (("stage", "display"),))] == 275
        assert got[("facestream_stage_frames_total", (("stage", "capture"),))] == 275
        assert got[("facestream_gallery_people", ())] == 6
        assert got[("facestream_source_up", (("stage", "capture"),))] in (0, 1)  # a file: up, then finished
        owed = got[("facestream_events_owed", ())]
        assert got[("facestream_events_sent_total", ())] == 0 and owed >= 2  # held for the broker
        assert got[("facestream_events_accepted_total", ())] == owed
        broker.start()
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, stderr_of(env)
