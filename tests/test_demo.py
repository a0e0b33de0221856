"""climgen demo: the README's first command."""

import subprocess
import sys
from pathlib import Path

import xarray as xr


def test_demo_writes_netcdf_png_and_summary(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "climgen.cli", "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "refinement depth" in result.stdout and "->" in result.stdout
    netcdf = tmp_path / "demo" / "africa_tas_x4.nc"
    picture = tmp_path / "demo" / "africa_tas_x4.png"
    assert picture.stat().st_size > 50_000 and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with xr.open_dataset(netcdf) as ds:
        assert ds["tas"].shape == (12, 156, 160)
        assert len(set(ds["refinement_depth"].values.ravel())) > 1
        assert '"covariates": ["elevation"]' in ds.attrs["climgen_provenance"]


def test_demo_output_is_unchanged_and_repeatable(tmp_path, climgen_cli):
    """The demo gives the stored reference (tests/data/make_demo_reference.py), and two runs give
    the same bytes. The reference is of the float32 model, which every CPU computes (``auto``
    takes bf16 where the CPU has it natively: test_inference compares the two), compared to
    1e-4 K, the rounding of other CPUs' kernels; any change of method moves values by far more."""
    import json

    import numpy as np

    sys.path.insert(0, str(Path(__file__).parent / "data"))
    from make_demo_reference import summarise

    # one run in this process, one in a fresh interpreter: the same bytes either way
    assert climgen_cli("demo", "--out", tmp_path / "first", "--precision", "float32").returncode == 0
    command = [sys.executable, "-m", "climgen.cli", "demo", "--out", str(tmp_path / "second"), "--precision", "float32"]
    assert subprocess.run(command, capture_output=True, timeout=600).returncode == 0
    outputs = [tmp_path / run / "africa_tas_x4.nc" for run in ("first", "second")]
    with xr.open_dataset(outputs[0]) as first, xr.open_dataset(outputs[1]) as second:
        for name in ("tas", "complexity_score", "predicted_gain", "refinement_depth", "refinement_macs"):
            assert first[name].values.tobytes() == second[name].values.tobytes(), name
    reference = json.loads((Path(__file__).parent / "data" / "demo_reference.json").read_text())
    got = summarise(outputs[0])
    assert got["shape"] == reference["shape"] and got["refinement_depth"] == reference["refinement_depth"]
    np.testing.assert_allclose(got["tas_sample"], reference["tas_sample"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(got["tas_monthly_mean"], reference["tas_monthly_mean"], rtol=0, atol=1e-4)
