"""Prometheus text from the pipeline's shared metrics rows (prometheus-client), for `/metrics`.

Read straight from the rows every stage writes (app/runtime/metrics.py), with no copy of the counters kept
here, so the web app (``render_metrics(ctx.all_metrics)`` in the display process) and the parent's own
server on METRICS_PORT (``MetricsServer``) report the same figures as the overlay. Every metric is listed in
docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from app.observe import counters
from app.protocol import Health
from app.runtime.metrics import LATENCY_BUCKETS, RUNNING, STATUS_NAMES, Metrics


class PipelineCollector:
    """A prometheus-client collector over one attached ``Metrics`` block."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        rows = [(name, self.metrics.row(name)) for name in self.metrics.spec.stages]
        per_stage = {
            "frames": CounterMetricFamily("facestream_stage_frames", "records (frames) a stage finished",
                                          labels=["stage"]),
            "busy": CounterMetricFamily("facestream_stage_busy_seconds", "seconds a stage spent working",
                                        labels=["stage"]),
            "drops": CounterMetricFamily("facestream_stage_drops", "frames a stage dropped (stale in live mode, "
                                         "or overwritten while read)", labels=["stage"]),
            "restarts": CounterMetricFamily("facestream_stage_restarts", "times a stage was restarted after "
                                            "a crash", labels=["stage"]),
            "depth": GaugeMetricFamily("facestream_stage_queue_depth", "records waiting in a stage's input "
                                       "queue(s)", labels=["stage"]),
            "up": GaugeMetricFamily("facestream_stage_up", "1 while a stage is running", labels=["stage"]),
        }
        latency = HistogramMetricFamily("facestream_latency_seconds", "capture to the end of a stage's work, "
                                        "per frame (stage=display: capture to display)", labels=["stage"])
        source = GaugeMetricFamily("facestream_source_up", "1 while a source delivers frames, 0 while it is "
                                   "reconnecting or its capture stage is not running", labels=["stage"])
        totals = {k: 0 for k in range(counters.COUNTERS_USED)}
        for name, row in rows:
            status = STATUS_NAMES[int(row["status"])]
            per_stage["frames"].add_metric([name], float(row["items"]))
            per_stage["busy"].add_metric([name], float(row["busy"]))
            per_stage["drops"].add_metric([name], float(row["drops"]))
            per_stage["restarts"].add_metric([name], float(row["restarts"]))
            per_stage["depth"].add_metric([name], float(row["depth"]))
            per_stage["up"].add_metric([name], 1.0 if int(row["status"]) == RUNNING else 0.0)
            hist = [int(v) for v in row["lat_hist"]]
            if sum(hist):
                cumulative, buckets = 0, []
                for bound, n in zip([*map(str, LATENCY_BUCKETS), "+Inf"], hist):
                    cumulative += n
                    buckets.append((bound, float(cumulative)))
                latency.add_metric([name], buckets, float(row["lat_sum"]))
            if name.startswith("capture"):
                down = status in ("failed", "stopped") or int(row["health"]) == Health.DOWN
                source.add_metric([name], 0.0 if down else 1.0)
            for k in totals:
                totals[k] += int(row["counters"][k])
        yield from per_stage.values()
        yield latency
        yield source
        for key, name, doc in FACE_COUNTERS:
            yield CounterMetricFamily(name, doc, value=float(totals[key]))
        yield GaugeMetricFamily("facestream_events_owed", "events not yet acknowledged by every sink",
                                value=float(totals[counters.EVENTS_OWED]))
        yield GaugeMetricFamily("facestream_gallery_people", "people enrolled in the gallery (read every "
                                f"{counters.GALLERY_EVERY:.0f} s)", value=float(totals[counters.GALLERY]))


FACE_COUNTERS = (
    (counters.FACES, "facestream_faces_detected", "faces found and aligned, summed over frames"),
    (counters.NAMED, "facestream_faces_named", "faces shown with an enrolled person's name, summed over frames"),
    (counters.UNKNOWN, "facestream_faces_unknown", "faces shown as unknown, summed over frames"),
    (counters.EVENTS_SENT, "facestream_events_sent", "events a sink acknowledged (summed over the sinks)"),
    (counters.EVENTS_FAILED, "facestream_events_failed", "failed attempts to send an event (each retry counts)"),
    (counters.EVENTS_DROPPED, "facestream_events_dropped", "undelivered events dropped because the on-disk "
     "queue was full (EVENTS_MAX_MB)"),
    (counters.EVENTS_ACCEPTED, "facestream_events_accepted", "events taken into the on-disk queue for the sinks"),
)


def render_metrics(metrics: Metrics) -> tuple[bytes, str]:
    """The body and content type of ``GET /metrics`` for the pipeline whose metrics block is ``metrics``
    (the display process: ``ctx.all_metrics``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(metrics))
    return generate_latest(registry), CONTENT_TYPE_LATEST
