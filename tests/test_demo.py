"""climgen demo: the README's first command."""

import subprocess
import sys

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
