"""``GET /metrics`` on the web app: the stages' shared rows in Prometheus text, behind the token like the API."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.observe import counters
from app.runtime.metrics import Metrics
from tests.app.web.conftest import make_client


@pytest.fixture
def table():
    metrics = Metrics.create(["capture", "identify", "display"])
    yield metrics
    metrics.close()


def test_no_pipeline_behind_the_app_is_503_in_one_line(client):
    answer = client.get("/metrics")
    assert answer.status_code == 503 and "running pipeline" in answer.json()["detail"]


def test_the_figures_are_the_rows_and_the_token_is_asked(library, live, table):
    display, identify = table.writer("display"), table.writer("identify")
    for _ in range(3):
        display.tick(busy=0.01, ts=0.0)
    identify.count(counters.NAMED, 2)
    live.table = table
    client = make_client(library, live, token="s3cret-token")
    assert client.get("/metrics").status_code == 401
    answer = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for family in text_string_to_metric_families(answer.text) for s in family.samples}
    assert got[("facestream_stage_frames_total", (("stage", "display"),))] == 3
    assert got[("facestream_faces_named_total", ())] == 2
    assert "s3cret-token" not in answer.text
