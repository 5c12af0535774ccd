"""Run the pipeline list (``app.cli.assemble``) to the end: start-up checks, the run, its one-line summary."""

from __future__ import annotations

import logging
import sys
import tempfile
import time

from app.cli.assemble import Plan, RunRequest, assemble
from app.cli.run import output_options
from app.cli.summary import end_line, time_to_name_line, written_files
from app.display.present import OutputOptions
from app.errors import FacestreamError, Stopped
from app.observe.server import serve_metrics
from app.observe.time_to_name import time_to_name
from app.runtime import Inline, PipelineResult, build_pipeline
from app.settings import Settings

log = logging.getLogger("facestream.run")

def preflight(settings: Settings) -> None:
    """Fail before any process starts: model files present and intact, the gallery openable, reachable (a server
    gets QDRANT_WAIT_S seconds to answer) and filled by EMBEDDER_MODEL."""
    from engines.fetch import require
    from engines.model_zoo import get_info

    for name, task in ((settings.detector_model, "detector"), (settings.embedder_model, "embedder")):
        require(settings.checkpoint_dir, get_info(name, task).onnx)
    wait_for_gallery(settings)


def wait_for_gallery(settings: Settings, poll: float = 1.0) -> None:
    """Open the gallery; a server that does not answer is retried until QDRANT_WAIT_S, then one clear error."""
    import time

    from app.gallery import GalleryUnavailable
    from app.redact import redact
    from app.stages.identify import gallery_from_settings

    deadline = time.monotonic() + settings.qdrant_wait_s
    while True:
        gallery = gallery_from_settings(settings, connect=False)
        try:
            connect = getattr(gallery, "connect", None)
            if connect is not None:
                connect()
            return
        except GalleryUnavailable:
            left = deadline - time.monotonic()
            if left <= 0:
                err = GalleryUnavailable(
                    f"the Qdrant server at {redact(settings.qdrant_url)} did not answer within QDRANT_WAIT_S="
                    f"{settings.qdrant_wait_s:g} s: start it or fix QDRANT_URL (or raise QDRANT_WAIT_S for a server "
                    "that is still starting)")
                raise err from None
            log.debug("waiting for the Qdrant server at %s", redact(settings.qdrant_url))
        finally:
            gallery.close()
        time.sleep(min(poll, left))


def total_drops(stats) -> int:
    """Drops over all stages. Several captures share one frames queue and each reports its drop count, so
    those are counted once (the largest)."""
    stats = list(stats)
    captures = [s.drops for s in stats if s.name.startswith("capture")]
    return sum(s.drops for s in stats if not s.name.startswith("capture")) + max(captures, default=0)


def run_pipeline(settings: Settings, request: RunRequest, report: dict | None = None,
                 options: OutputOptions | None = None) -> int:
    """Run the pipeline list to the end, on processes or (``request.single_process``) in this one; ``report`` (if
    given) receives the result and the per-stage stats. Ends with one line (how it ended, the files written); a
    stage failure is then raised as the run's one error line."""
    started = time.time()
    preflight(settings)
    from app.gallery.sightings_feed import policy_warning

    if policy_warning(settings):
        log.warning(policy_warning(settings))
    with tempfile.TemporaryDirectory(prefix="facestream-ttn-") as marks:
        plan = assemble(settings, request, options, marks)
        mode = "every-frame" if plan.every else "live"
        if request.single_process:
            log.info("running %d stages in one process (%s mode)", len(plan.steps), mode)
            result, stats_list = run_inline(plan)
        else:
            pipe = build_pipeline(plan.steps, plan.layout, settings.log_level)
            log.info("running %d stages (%s mode)", len(pipe.stages), mode)
            server = serve_metrics(settings, lambda: pipe.metrics.spec if pipe.metrics is not None else None,
                                   plan.options.serve_port)
            try:
                result = pipe.run()
            finally:
                if server is not None:
                    server.close()
            stats_list = pipe.stage_stats()
        ttn = time_to_name(marks)
    if report is not None:
        report.update(result=result, stats=stats_list, every_frame=plan.every, time_to_name=ttn)
    stats = {s.name: s for s in stats_list}
    shown = stats.get("display")
    frames = shown.items if shown else 0
    files = written_files(output_options(settings, request, 30.0, dict.fromkeys(range(len(settings.sources)), "")),
                          started)
    blind = stats["identify"].down_s if "identify" in stats else 0.0
    ttn_line = time_to_name_line(ttn) if not plan.every else None  # live mode only: capture times are real time
    if ttn_line:
        print(ttn_line, file=sys.stderr)
    print(end_line(result.reason, frames, result.seconds, total_drops(stats.values()), files, blind), file=sys.stderr)
    for s in stats.values():
        log.debug("%s: %d items, busy %.0f%%, %.2f ms each", s.name, s.items, s.busy * 100,
                  s.busy_s / max(s.items, 1) * 1000)
    if result.reason == "failed":
        err = FacestreamError(result.summary())
        err.exit_code = result.exit_code
        raise err
    if not result.ok:  # Ctrl-C (130) or SIGTERM (143): a stop the user asked for, said above, not an error
        raise Stopped(result.exit_code)
    return 0


def run_inline(plan: Plan) -> tuple[PipelineResult, list]:
    """The list in this process; Ctrl-C keeps what was written so far and ends the run 'interrupted'."""
    runner = Inline(plan.steps, plan.layout)
    t0 = time.monotonic()
    try:
        runner.run()
        reason = "stopped" if runner.stop.is_set() else "finished"
    except KeyboardInterrupt:
        reason = "interrupted"
    return PipelineResult(reason, seconds=time.monotonic() - t0), runner.final_stats
