"""The notebooks run top to bottom (code cells in order, from the repository root, as a kernel would)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_notebook(name: str) -> subprocess.CompletedProcess:
    nb = json.loads((REPO / "notebooks" / name).read_text())
    code = "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_enrol_and_recognise_notebook_runs(shared_dir):
    proc = run_notebook("enrol_and_recognise.ipynb")
    # the scene's two people are found and named, and the identities separate cleanly
    assert "obama" in proc.stdout and "biden" in proc.stdout
    same, diff = proc.stdout.strip().splitlines()[-1].replace("same person: min ", "").split("  different people: max ")
    assert float(same) > float(diff) + 0.2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_create_engine_notebook_runs(shared_dir):
    pytest.importorskip("tensorrt_rtx_bindings")
    pytest.importorskip("onnxconverter_common")
    proc = run_notebook("create_engine.ipynb")
    line = next(x for x in proc.stdout.splitlines() if "FP16 vs FP32 cosine" in x)
    assert float(line.rsplit("min ", 1)[1]) >= 0.999
    assert "w600k_mbf-fp16-" in proc.stdout
