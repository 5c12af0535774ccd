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


def load_warned(tmp_path, text: str, environ: dict | None = None) -> tuple[Settings, list[str]]:
    env = tmp_path / ".env"
    env.write_text(text)
    lines: list[str] = []
    return Settings.load(env, environ=environ or {}, warn=lines.append), lines


def test_env_typo_warns_naming_the_closest_key_and_keeps_the_default(tmp_path):
    s, lines = load_warned(tmp_path, "MATCH_TRESHOLD=0.5\ndet_size=320\nCOLOUR=blue\n")
    assert lines == [".env: unknown key MATCH_TRESHOLD is ignored — did you mean MATCH_THRESHOLD?",
                     ".env: unknown key det_size is ignored — did you mean DET_SIZE?",
                     ".env: unknown key COLOUR is ignored — see .env.example for every key"]
    assert s.match_threshold == Settings().match_threshold and s.det_size == Settings().det_size


def test_keys_read_from_the_environment_elsewhere_are_not_unknown(tmp_path):
    _, lines = load_warned(tmp_path, "FACESTREAM_MODEL_MIRROR=/m\nENGINE_STORE=s3://b/p\nORT_THREADS=2\n"
                                     "AWS_ACCESS_KEY_ID=x\nDET_SIZE=320\n")
    assert lines == []


@pytest.mark.parametrize("old,new,field", [("MATCH_THRESH", "TRACK_MATCH_THRESH", "match_thresh"),
                                           ("TRACK_THRESH", "TRACK_HIGH_THRESH", "track_thresh")])
def test_old_bytetrack_keys_still_work_with_one_warning(tmp_path, old, new, field):
    s, lines = load_warned(tmp_path, f"{old}=0.65\n")
    assert getattr(s, field) == 0.65
    assert lines == [f"{old} is now {new}: rename it in .env"]
    s, lines = load_warned(tmp_path, "", environ={old: "0.6"})
    assert getattr(s, field) == 0.6 and lines == [f"{old} is now {new}: rename it in the environment"]
    s, lines = load_warned(tmp_path, f"{old}=0.65\n{new}=0.7\n")  # both: the new name wins
    assert getattr(s, field) == 0.7
    assert lines == [f"{old} is now {new}: remove {old} from .env ({new} is set and wins)"]


def test_settings_loaded_without_a_warn_callback_stay_quiet(tmp_path, capsys):
    env = tmp_path / ".env"
    env.write_text("MATCH_TRESHOLD=0.5\nMATCH_THRESH=0.6\n")
    assert Settings.load(env, environ={}).match_thresh == 0.6  # what a stage process does: the parent warned
    assert capsys.readouterr() == ("", "")


def test_no_two_keys_differ_only_by_an_abbreviation():
    # MATCH_THRESHOLD (who a face is) and ByteTrack's MATCH_THRESH were one abbreviation apart
    words = {"THRESHOLD": "THRESH", "DETECTOR": "DET", "DETECT": "DET"}

    def norm(key: str) -> str:
        return "_".join(words.get(w, w) for w in key.split("_"))

    keys = list(Settings.env_keys())
    assert len({norm(k) for k in keys}) == len(keys)


def test_retired_store_unknown_warns_once_pointing_to_sightings_all(tmp_path):
    s, lines = load_warned(tmp_path, "STORE_UNKNOWN=true\n")
    assert len(lines) == 1 and "STORE_UNKNOWN" in lines[0] and "SIGHTINGS=all" in lines[0] and ".env" in lines[0]
    assert s.sightings == "known" and not hasattr(s, "store_unknown")  # it does nothing now, and is not a typo


def test_sightings_and_blur_modes_are_checked():
    assert Settings.load(None, environ={"SIGHTINGS": "all", "PRIVACY_BLUR": "unknown"}).privacy_blur == "unknown"
    with pytest.raises(FacestreamError, match="PRIVACY_BLUR='faces' — choose one of none, unknown, all"):
        Settings.load(None, environ={"PRIVACY_BLUR": "faces"})
