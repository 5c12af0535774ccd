"""A loopback RTSP server for the fault tests, looping an H.264 MP4 at its frame rate without re-encoding.

Runs under the *system* Python (``/usr/bin/python3``), where Debian's python3-gi and GStreamer's RTSP server
live; the venv cannot import ``gi``. ``tests/app/faults/servers.py`` (``RtspSource``) starts it in a
subprocess and kills it to take the stream down.

    /usr/bin/python3 rtsp_server.py --port 8554 --file clip.mp4 [--path /clip]   # credentials: FS_RTSP_AUTH=user:pw
    /usr/bin/python3 rtsp_server.py --check                                     # exit 0 if everything is there

The clip's H.264 access units are demuxed into memory once at start-up (about 0.1 s for the shared clip) and
each client gets its own media that pushes them through ``appsrc ! rtph264pay`` with timestamps that keep
counting across loops; the RTSP server's sinks pace them to the clock. The clip must start with a key frame
and have no B-frames (decode order = display order), as the shared baseline-profile clip does.

Prints ``ready <port>`` once it listens and ``client`` for every RTSP connection it accepts (stdout, flushed);
exits when killed or when its stdin closes (the test that started it died).
"""

from __future__ import annotations

import argparse
import os
import sys

PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good"


def import_gst():
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    for element in ("qtdemux", "appsrc", "appsink", "rtph264pay"):
        if Gst.ElementFactory.find(element) is None:
            raise ImportError(f"GStreamer element {element} not found")
    return GLib, Gst, GstRtspServer


def load_clip(Gst, path: str):  # noqa: N803 - the module's own name
    """(caps, [(bytes, is_key_frame)], frame duration in ns) of the clip's H.264 track, demuxed, not decoded."""
    pipeline = Gst.parse_launch(f'filesrc location="{path}" ! qtdemux ! video/x-h264 ! '
                                "appsink name=sink sync=false max-buffers=0")
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    caps, units = None, []
    while True:
        sample = sink.emit("try-pull-sample", 10 * Gst.SECOND)
        if sample is None:
            break
        buf = sample.get_buffer()
        caps = caps or sample.get_caps()
        units.append((buf.extract_dup(0, buf.get_size()), not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)))
    error = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if error is not None:
        raise SystemExit(f"rtsp_server: cannot read {path}: {error.parse_error()[0].message}")
    if not units or not units[0][1]:
        raise SystemExit(f"rtsp_server: {path}: no H.264 track, or it does not start with a key frame")
    ok, num, den = caps.get_structure(0).get_fraction("framerate")
    if not ok or num <= 0:
        num, den = 30, 1
    return caps, units, Gst.util_uint64_scale_int(Gst.SECOND, den, num)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 0 if GStreamer's RTSP server can be used here")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--file")
    ap.add_argument("--path", default="/clip", help="mount point (default /clip)")
    args = ap.parse_args()
    try:
        GLib, Gst, GstRtspServer = import_gst()  # noqa: N806 - module names
    except (ImportError, ValueError) as e:
        print(f"rtsp_server: GStreamer RTSP server not usable ({e}): apt-get install {PACKAGES}", file=sys.stderr)
        return 3
    if args.check:
        return 0
    if not args.file:
        ap.error("--file is required")

    caps, units, duration = load_clip(Gst, args.file)

    def on_media_configure(_factory, media) -> None:
        appsrc = media.get_element().get_child_by_name("src")
        appsrc.set_property("caps", caps)
        state = {"k": 0}

        def need_data(src, _length) -> None:
            k = state["k"]
            data, key = units[k % len(units)]
            buf = Gst.Buffer.new_wrapped(data)
            buf.pts = buf.dts = k * duration
            buf.duration = duration
            if not key:
                buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
            state["k"] = k + 1
            src.emit("push-buffer", buf)

        appsrc.connect("need-data", need_data)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch("( appsrc name=src format=time max-bytes=65536 "
                       "! rtph264pay name=pay0 pt=96 config-interval=-1 )")
    factory.set_shared(False)  # every client from the clip's first frame, like the MJPEG test server
    factory.connect("media-configure", on_media_configure)

    auth = os.environ.get("FS_RTSP_AUTH")
    if auth:
        user, _, password = auth.partition(":")
        rtsp_auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        rtsp_auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(rtsp_auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role("user")
        permissions.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(permissions)

    server.get_mount_points().add_factory(args.path, factory)

    def on_client(_server, _client) -> None:
        print("client", flush=True)

    server.connect("client-connected", on_client)
    if not server.attach(None):
        print(f"rtsp_server: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    # the test that started us died (or closed our stdin): stop, rather than serve forever
    GLib.io_add_watch(GLib.IOChannel.unix_new(sys.stdin.fileno()), GLib.PRIORITY_DEFAULT,
                      GLib.IOCondition.IN | GLib.IOCondition.HUP, lambda *_: loop.quit() or False)
    print(f"ready {args.port}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
