from pathlib import Path

import pytest

from app.errors import FacestreamError
from app.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_defaults_and_types():
    s = Settings.load(None, environ={})
    assert s.detector_backend == "onnxruntime" and s.det_size == 640 and s.strict_gpu is False


def test_env_file_then_environment_then_overrides(tmp_path):
    env = tmp_path / ".env"
    env.write_text("DET_SIZE=320\nSTRICT_GPU=true\nQDRANT_COLLECTION=from_file\n")
    s = Settings.load(env, overrides={"QDRANT_COLLECTION": "override"}, environ={"DET_SIZE": "480"})
    assert s.det_size == 480  # the real environment wins over .env
    assert s.strict_gpu is True
    assert s.qdrant_collection == "override"


@pytest.mark.parametrize(
    "key,value,expect",
    [
        ("STRICT_GPU", "maybe", "STRICT_GPU='maybe' is not true or false"),
        ("DET_SIZE", "big", "DET_SIZE='big' is not a whole number"),
        ("EMBEDDING_BACKEND", "tensorflow", "EMBEDDING_BACKEND='tensorflow' — choose one of onnxruntime"),
        ("MATCH_THRESHOLD", "3", "MATCH_THRESHOLD='3' is outside"),
        ("DEVICE", "tpu", "DEVICE='tpu' is not valid"),
    ],
)
def test_bad_value_is_one_clear_line_naming_the_key(key, value, expect):
    with pytest.raises(FacestreamError) as info:
        Settings.load(None, environ={key: value})
    message = str(info.value)
    assert expect in message and "\n" not in message


def test_env_example_lists_every_key_with_its_default():
    text = (REPO / ".env.example").read_text()
    assert text == Settings().example()
    for key in Settings.env_keys():
        assert f"\n{key}=" in text


def test_sources_split_on_commas():
    s = Settings.load(None, environ={"VIDEO_SOURCE": "a.mp4, rtsp://h/x ,0"})
    assert s.sources == ["a.mp4", "rtsp://h/x", "0"]


def test_decoder_threads_share_the_cores_between_sources(monkeypatch):
    monkeypatch.setattr("app.settings.usable_cores", lambda: 16)
    one, two = "a.mp4", "a.mp4,b.mp4"
    assert Settings(video_source=one).decoder_threads() == 8  # capped: more slowed the pipeline's decoder
    assert Settings(video_source=two).decoder_threads() == 8
    assert Settings(video_source=",".join(["a.mp4"] * 16)).decoder_threads() == 2  # never below two
    assert Settings(video_source=one, decode_threads=3).decoder_threads() == 3  # DECODE_THREADS wins
    monkeypatch.setattr("app.settings.usable_cores", lambda: 4)
    assert Settings(video_source=",".join(["a.mp4"] * 4)).decoder_threads() == 2
