"""The notebooks run top to bottom (code cells in order, from the repository root, as a kernel would)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_enrol_and_recognise_notebook_runs(shared_dir):
    nb = json.loads((REPO / "notebooks/enrol_and_recognise.ipynb").read_text())
    code = "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr
    # the scene's two people are found and named, and the identities separate cleanly
    assert "obama" in proc.stdout and "biden" in proc.stdout
    same, diff = proc.stdout.strip().splitlines()[-1].replace("same person: min ", "").split("  different people: max ")
    assert float(same) > float(diff) + 0.2
