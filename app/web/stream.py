"""MJPEG: ``/stream.mjpg`` (stream 0, or the grid of every stream) and ``/stream/{n}.mjpg``.

Each client waits on the live view (in a worker thread, for at most half a second at a time) and gets every new
picture; a client that reads slowly simply skips pictures (it always gets the latest), so a slow phone never
holds up the pipeline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from app.web.errors import WebError
from app.web.live import GRID, LiveView

router = APIRouter(tags=["stream"])
BOUNDARY = "frame"


async def frames(live: LiveView, key: int | str, limit: int = 0) -> AsyncIterator[bytes]:
    """Multipart parts of ``key``'s pictures as they come (``limit``: stop after that many; 0: until closed).

    Async on purpose: when the client goes away the server cancels this generator, so the viewer count drops
    at once (a sync generator is only closed whenever it is garbage-collected: a closed tab kept the display
    copying and encoding every frame for nobody)."""
    sent = version = 0
    with live.watching(key):
        while not live.closed and (not limit or sent < limit):
            new, jpeg = await to_thread.run_sync(live.wait, key, version, 0.5, abandon_on_cancel=True)
            if jpeg is None or new == version:
                continue
            version = new
            sent += 1
            yield (b"--" + BOUNDARY.encode() + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                   + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")


def _response(request: Request, key: int | str) -> StreamingResponse:
    return StreamingResponse(frames(request.app.state.web.live, key),
                             media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                             headers={"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"})


@router.get("/stream.mjpg", summary="MJPEG of stream 0, or the grid of every stream when there are several")
def stream_main(request: Request) -> StreamingResponse:
    live = request.app.state.web.live
    return _response(request, GRID if len(live.streams) > 1 else 0)


@router.get("/stream/{n}.mjpg", summary="MJPEG of stream n")
def stream_one(n: int, request: Request) -> StreamingResponse:
    if n not in request.app.state.web.live.streams:
        raise WebError(404, f"no stream {n}: this run has streams {sorted(request.app.state.web.live.streams)}")
    return _response(request, n)
