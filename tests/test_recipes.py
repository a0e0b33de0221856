"""Every batch recipe in recipes/ validates; the local one runs end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

from climgen.jobs import load_run_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
BATCH = sorted(RECIPES.glob("downscale-*.yaml"))


def test_there_are_batch_recipes():
    assert len(BATCH) >= 3


@pytest.mark.parametrize("recipe", BATCH, ids=[path.stem for path in BATCH])
def test_batch_recipes_validate(recipe):
    job = load_run_recipe(recipe)
    assert job.factor in (2, 4, 8, 16)
    if job.fetch is not None:
        from climgen.jobs import fetch_request

        request = fetch_request(job.fetch)
        assert set(request.variables) <= set(request.collection.variables)
    else:
        assert all(path.exists() for path in job.input_paths())


def test_africa_recipe_runs_and_resumes_nothing_when_done(tmp_path):
    recipe = RECIPES / "downscale-africa-tas-x4.yaml"
    output = tmp_path / "africa.nc"
    command = [sys.executable, "-m", "climgen.cli", "run", str(recipe), "--output", str(output), "--quiet"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    with xr.open_dataset(output) as refined:
        assert refined["tas"].shape == (12, 156, 160)
        assert "elevation" in refined.attrs["climgen_provenance"]
    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and "nothing to do" in second.stdout


@pytest.mark.parametrize("recipe", BATCH, ids=[path.stem for path in BATCH])
def test_batch_recipes_dry_run_offline(recipe, tmp_path):
    command = [sys.executable, "-m", "climgen.cli", "run", str(recipe), "--dry-run", "--output", str(tmp_path / "out.nc")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    job = load_run_recipe(recipe)
    if job.fetch is not None:  # no network: the plan stops at the fetch it would do
        assert result.stdout.startswith("fetch ") and "not fetched yet" in result.stdout
    else:
        assert "tasks" in result.stdout and "GMAC" in result.stdout
    assert not (tmp_path / "out.nc").exists()
