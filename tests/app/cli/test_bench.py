"""`facestream bench`: the commands run and write what docs/benchmarks.md quotes (figures are not asserted)."""

import json

import pytest

from app.cli import main


def test_bench_models_writes_json_and_plot(tmp_path, checkpoint_dir, media_dir):
    env = tmp_path / ".env"
    env.write_text(f"CHECKPOINT_DIR={checkpoint_dir}\n")
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    assert main(["--env", str(env), "bench", "models", "--backends", "onnxruntime:cpu", "--batches", "1,4",
                 "--seconds", "0.05", "--image", str(media_dir / "scenes/two_people.jpg"), "--json", str(out),
                 "--plot", str(png)]) == 0
    r = json.loads(out.read_text())
    assert [row["batch"] for row in r["embedder"]] == [1, 4]
    assert all(row["faces_per_s"] > 0 and row["vs_baseline"] == 1.0 for row in r["embedder"])
    assert [row["faces"] for row in r["detector"]] == [2, 2]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_pipeline_reports_pipeline_and_baseline(tmp_path, enrolled_env, media_dir):
    out = tmp_path / "p.json"
    assert main(["--env", str(enrolled_env), "bench", "pipeline", "--source",
                 str(media_dir / "video/short_hamilton_clip.mp4"), "--max-frames", "60", "--skip-live",
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["every_frame"]["frames"] == 60 and r["baseline"]["frames"] == 60
    assert r["processed_fps"] > 0 and r["speedup_vs_baseline"] > 0
    assert set(r["every_frame"]["stages"]) == {"capture", "detect", "align", "embed+track", "identify", "display"}
    assert r["every_frame"]["latency"]["p50_ms"] <= r["every_frame"]["latency"]["p99_ms"]
