import pytest

from app.errors import FacestreamError
from app.stages.capture import VideoSource, parse_source


def test_parse_source_kinds(media_dir):
    assert parse_source("0").kind == "webcam"
    assert parse_source("rtsp://u:p@h/s").kind == "stream"
    assert parse_source("http://h/x.mjpg").live
    spec = parse_source(str(media_dir / "video/short_hamilton_clip.mp4"))
    assert spec.kind == "file" and not spec.live


@pytest.mark.parametrize("raw,expect", [
    ("", "VIDEO_SOURCE is empty"),
    ("ftp://h/x.mp4", "scheme ftp:// is not supported"),
    ("/no/such/video.mp4", "VIDEO_SOURCE file not found: /no/such/video.mp4"),
])
def test_bad_sources_are_clear(raw, expect):
    with pytest.raises(FacestreamError, match=expect.replace("/", ".").replace("(", ".")):
        parse_source(raw)


def test_credentials_never_in_display_name():
    assert "pw" not in parse_source("rtsp://user:pw@cam/stream").display_name


def test_file_reads_every_frame_then_ends(media_dir):
    src = VideoSource(parse_source(str(media_dir / "video/short_hamilton_clip.mp4")))
    w, h, fps = src.probe()
    assert (w, h) == (640, 360) and abs(fps - 29.97) < 0.01
    n = 0
    while (frame := src.read()) is not None:
        assert frame.shape == (360, 640, 3)
        n += 1
    assert n == 275 and src.ended and src.status == "ended"


def test_corrupt_video_is_one_clear_error(tmp_path, media_dir):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    src = VideoSource(parse_source(str(bad)))
    with pytest.raises(FacestreamError, match="cannot be decoded"):
        src.probe()
        src.read()


def test_missing_webcam_is_one_clear_error():
    with pytest.raises(FacestreamError, match="webcam 57 cannot be opened"):
        VideoSource(parse_source("57")).probe()


def test_truncated_video_is_one_clear_error(tmp_path, media_dir):
    cut = tmp_path / "cut.mp4"
    data = (media_dir / "video/short_hamilton_clip.mp4").read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # a copy interrupted half-way
    with pytest.raises(FacestreamError, match="cannot be decoded .corrupt, truncated or not a video"):
        src = VideoSource(parse_source(str(cut)))
        src.probe()
        while src.read() is not None:
            pass
