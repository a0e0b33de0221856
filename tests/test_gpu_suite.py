"""benchmarks/gpu_suite.py: the prepared device run works end to end, small, on CPU."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_cpu_run_writes_every_section(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--device", "cpu", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "gpu_suite.json").read_text())
    sections = document["sections"]
    assert "errors" not in sections, sections.get("errors")
    assert {"generator", "accuracy", "refinement", "training"} <= set(sections)
    assert all(row["output_mpix_per_s"] > 0 for row in sections["generator"])
    assert {row["precision"] for row in sections["generator"]} == {"float32", "bfloat16"}
    assert any(row.get("bit_identical") for row in sections["accuracy"]), "the same seed gives the same bits"
    steps = {row["what"] for row in sections["refinement"]}
    assert {"read", "model", "write", "streaming.run zarr->zarr"} <= steps
    training = sections["training"][0]
    assert training["seconds_2_steps"] > 0 and training["seconds_8_steps"] > 0  # the rate is their difference
    assert training.get("steps_per_s", 1) > 0
    assert "## generator" in (tmp_path / "gpu_suite.md").read_text()
