"""``GET /metrics``: the pipeline's Prometheus metrics from the web server (METRICS_PORT serves them otherwise).

The display process hosts the web app and hands the live view the shared metrics block (``LiveView.table``); a
server started without one (tests, a page with no pipeline behind it) answers 503 in one line.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.web.errors import WebError

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics of the running pipeline")
def metrics(request: Request) -> Response:
    from app.observe.prom import render_metrics

    table = getattr(request.app.state.web.live, "table", None)
    if table is None:
        raise WebError(503, "no pipeline metrics here: /metrics is served by a running pipeline's web app")
    body, content_type = render_metrics(table)
    return Response(body, media_type=content_type)
